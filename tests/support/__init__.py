"""Helpers the test modules import (not fixtures: those live in conftest.py)."""
