"""Backups: verified dumps, their archive files, restore and retention."""
