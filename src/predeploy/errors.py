"""Typed errors: each carries the exit code of DESIGN.md's contract.

The library raises these and never prints or exits; ``predeploy.cli.tasks`` turns
them into one line on stderr and the process exit code.
"""

from __future__ import annotations

__all__ = [
    "BackupError",
    "CheckFailed",
    "ConfigError",
    "DatabaseUnreachable",
    "HealthCheckFailed",
    "LockBusy",
    "MigrationError",
    "PredeployError",
    "Refused",
]


class PredeployError(Exception):
    """Base of every error predeploy reports to an operator.

    The message is one line that says what is wrong and what to do next.
    """

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class CheckFailed(PredeployError):
    """A check found something: pending, drift, lint errors (exit 1)."""

    exit_code = 1


class ConfigError(PredeployError):
    """Bad configuration or usage (exit 2)."""

    exit_code = 2


class DatabaseUnreachable(PredeployError):
    """The database could not be reached or refused us (exit 3)."""

    exit_code = 3


class BackupError(PredeployError):
    """A backup could not be made or verified (exit 4)."""

    exit_code = 4


class MigrationError(PredeployError):
    """A migration failed or must not run (exit 5)."""

    exit_code = 5


class LockBusy(PredeployError):
    """Another run holds the lock (exit 6)."""

    exit_code = 6


class HealthCheckFailed(PredeployError):
    """A health check failed (exit 7)."""

    exit_code = 7


class Refused(PredeployError):
    """Confirmation declined or impossible (exit 8)."""

    exit_code = 8
