"""The train stage: targets, seeded splits and metrics (``evaluate.py``), model fitting per target x model x seed."""
