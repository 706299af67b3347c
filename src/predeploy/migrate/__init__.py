"""Migrations: discovery, history, status, the executor, lint, rollback."""
