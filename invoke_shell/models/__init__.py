"""The model manager: the registry of configs/models.yaml and loading from disk only."""
