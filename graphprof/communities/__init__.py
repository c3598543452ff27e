"""Communities: Leiden / Louvain on the social (or combined) graph (``detect.py``) and their profiles (``profiles.py``)."""
