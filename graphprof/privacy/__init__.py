"""Personal data: erasure of users everywhere (``forget``) and pseudonymised ids."""
