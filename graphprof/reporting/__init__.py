"""The HTML report of a work directory."""
