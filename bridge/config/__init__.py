"""Configuration: the settings models, loading with file and key in every error, credentials."""
