"""Configuration: settings from .env files and the environment, database URLs."""
