"""Typed errors: each carries the exit code of DESIGN.md's contract.

The library raises these and never prints or exits; ``predeploy.cli.boundary.exit_for``
turns any exception into one line on stderr and the process exit code.
"""

from __future__ import annotations

import re
import signal

__all__ = [
    "EXIT_CODES",
    "INTERRUPTED_CODES",
    "SIGINT_EXIT",
    "BackupError",
    "Blocked",
    "CheckFailed",
    "ConfigError",
    "DatabaseUnreachable",
    "HealthCheckFailed",
    "HostUnreachable",
    "InternalError",
    "Interrupted",
    "LockBusy",
    "MigrationError",
    "PredeployError",
    "Refused",
    "StoppedPartWay",
    "Terminated",
    "interrupted",
]

# the contract of README's "Exit codes" and `predeploy --help` (tests/cli/test_cli_edges.py holds
# them equal); each PredeployError subclass below carries its code
EXIT_CODES = (
    ("0", "ok"),
    (
        "1",
        "a check found something: pending/failed/edited migrations (status --check), lint "
        "errors, drift, a damaged backup (backups --check)",
    ),
    (
        "2",
        "bad configuration or usage (an unknown flag, a bad value, a missing argument), a "
        "missing privilege (the error names the GRANT)",
    ),
    (
        "3",
        "the database is unreachable, refused us, or is a standby; a catalogue read blocked "
        "too long; an app host is unreachable over SSH (a deploy then changes nothing)",
    ),
    ("4", "a backup or restore failed"),
    (
        "5",
        "a migration failed or must not run (nothing was applied, or what was is in the runbook)",
    ),
    ("6", "another run holds the lock"),
    ("7", "a health check failed"),
    (
        "8",
        "refused: a confirmation was declined, or impossible without a terminal and --yes",
    ),
    (
        "9",
        "internal error: a bug; the traceback is only in the run's log file, which the line names",
    ),
    (
        "129 / 130 / 143",
        "interrupted by SIGHUP / SIGINT / SIGTERM (the runbook and audit row are written first)",
    ),
)

_ONE_LINE = re.compile(r"\s*[\r\n]+\s*")


class PredeployError(Exception):
    """Base of every error predeploy reports to an operator.

    The message is one line that says what is wrong and what to do next.
    """

    exit_code: int = 1
    # the gate that refused the run ("confirmation (no terminal)", "--no-backup"), if one
    # did: its audit row reads "refused: <gate>" rather than a step that failed
    refused_by: str | None = None
    # what a run that did what it could stopped before, by design ("the post-deploy phase"):
    # its audit row reads "applied: stopped before <it>" rather than a failure
    stopped_before: str | None = None

    def __init__(self, message: str) -> None:
        # one line, whatever the server or a program put in it (RAISE E'a\nb', libpq's
        # multi-line texts): the operator's screen and CI logs get exactly one
        message = _ONE_LINE.sub(" ", message.strip())
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


class HostUnreachable(PredeployError):
    """An app host could not be reached over SSH, or refused us (exit 3)."""

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

    def __init__(self, message: str, refused_by: str = "confirmation") -> None:
        super().__init__(message)
        self.refused_by = refused_by


class InternalError(PredeployError):
    """A bug: something predeploy did not foresee (exit 9; the traceback is in the log file)."""

    exit_code = 9


class Blocked(DatabaseUnreachable):
    """A read or write waited too long for a lock another session holds (exit 3 by default;
    a step reports it with its own code)."""

    exit_code = 3


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread as Ctrl-C's KeyboardInterrupt is (exit
    128 + the signal's number: 143, 129).

    A KeyboardInterrupt subclass so that everything that cleans up after Ctrl-C (psycopg
    cancels the running query, children are killed, partial files removed) does so after
    SIGTERM (pm2, systemd, CI) and SIGHUP (ssh dropped, terminal closed) too.
    """

    exit_code = 143  # SIGTERM's; each instance has its own signal's

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signal = signal.Signals(signum).name
        self.exit_code = 128 + signum


class StoppedPartWay(Terminated):
    """A signal that struck while a migration ran outside a transaction (exit as the
    signal's): ``name`` ran ``ran`` of its ``total`` statements and is recorded as failed."""

    def __init__(self, signum: int, name: str, ran: tuple[str, ...], total: int) -> None:
        super().__init__(signum)
        self.name, self.ran, self.total = name, ran, total  # ran: those statements' first lines


# the exit codes of a run stopped by a signal: SIGHUP, SIGINT, SIGTERM
SIGINT_EXIT = 128 + signal.SIGINT  # Ctrl-C: 130
INTERRUPTED_CODES = frozenset({128 + signal.SIGHUP, SIGINT_EXIT, 128 + signal.SIGTERM})


class Interrupted(PredeployError):
    """A run stopped by SIGINT (exit 130), SIGTERM (143) or SIGHUP (129), reported like any
    failure: what it changed, its runbook and its audit row."""

    def __init__(
        self,
        message: str,
        exit_code: int,
        left_failed: str | None = None,
        ran: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.left_failed = left_failed  # the migration it stopped part-way, if any
        self.ran = ran  # the first lines of that migration's statements that ran


def interrupted(exc: KeyboardInterrupt, doing: str) -> Interrupted:
    """The Interrupted error for a KeyboardInterrupt (Ctrl-C) or a Terminated (SIGTERM,
    SIGHUP); a StoppedPartWay says which migration it left failed and what to do."""
    if isinstance(exc, StoppedPartWay):
        return Interrupted(
            f"stopped by {exc.signal} while {doing}: {exc.name} ran {len(exc.ran)} of its "
            f"{exc.total} statement(s) outside a transaction and is recorded as failed: check "
            f"what it changed, then `predeploy resolve --rolled-back {exc.name}` (or "
            f"--applied) before migrating again",
            exc.exit_code,
            left_failed=exc.name,
            ran=exc.ran,
        )
    if isinstance(exc, Terminated):
        return Interrupted(f"stopped by {exc.signal} while {doing}", exc.exit_code)
    return Interrupted(f"interrupted (SIGINT) while {doing}", SIGINT_EXIT)
