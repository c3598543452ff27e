"""Profiles of unseen users: the saved graph extended with new rows, their features in the saved feature space, scored by the saved models."""
