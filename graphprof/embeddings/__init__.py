"""User and item embeddings for recommenders: export, nearest users and recommendations."""
