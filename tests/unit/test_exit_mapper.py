"""The one exception -> (line, exit code) mapper: every way a command can end (pure)."""

from __future__ import annotations

import signal

import psycopg
import pytest
from invoke.exceptions import Exit

from predeploy.cli.boundary import exit_for
from predeploy.errors import (
    EXIT_CODES,
    BackupError,
    Blocked,
    CheckFailed,
    ConfigError,
    DatabaseUnreachable,
    HealthCheckFailed,
    Interrupted,
    LockBusy,
    MigrationError,
    PredeployError,
    Refused,
    Terminated,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (CheckFailed("2 pending"), 1),
        (ConfigError("bad value"), 2),
        (DatabaseUnreachable("no server"), 3),
        (Blocked("waited too long"), 3),
        (BackupError("pg_dump failed"), 4),
        (MigrationError("1_a failed"), 5),
        (LockBusy("another run"), 6),
        (HealthCheckFailed("unhealthy"), 7),
        (Refused("declined"), 8),
        (Interrupted("stopped by SIGTERM while migrating", 143), 143),
    ],
)
def test_a_predeploy_error_is_its_message_and_its_code(error: PredeployError, code: int) -> None:
    """A library error ends the command with "predeploy: <its message>" and its exit code."""
    assert exit_for(error) == (f"predeploy: {error.message}", code)


def test_every_code_of_the_errors_is_in_the_table() -> None:
    """The errors' codes are those of the table beside them (README and --help show it)."""
    documented = {c for code, _ in EXIT_CODES for c in code.split(" / ")}
    kinds = (CheckFailed, ConfigError, DatabaseUnreachable, BackupError, MigrationError, LockBusy)
    kinds += (HealthCheckFailed, Refused)
    assert {str(k.exit_code) for k in kinds} <= documented
    assert {"9", "129", "130", "143"} <= documented


@pytest.mark.parametrize(
    ("exc", "line", "code"),
    [
        (KeyboardInterrupt(), "predeploy: interrupted (SIGINT)", 130),
        (Terminated(signal.SIGTERM), "predeploy: stopped by SIGTERM", 143),
        (Terminated(signal.SIGHUP), "predeploy: stopped by SIGHUP", 129),
        (
            psycopg.OperationalError("server closed the connection unexpectedly"),
            "predeploy: the database connection failed mid-run: server closed the connection "
            "unexpectedly",
            3,
        ),
        (Exit("predeploy: one task at a time", 2), "predeploy: one task at a time", 2),
        (Exit(None, 0), "", 0),
    ],
)
def test_signals_a_broken_connection_and_invoke_exits(
    exc: BaseException, line: str, code: int
) -> None:
    """SIGINT, SIGTERM and SIGHUP are 130, 143 and 129; a connection lost where nothing
    expected it is exit 3; invoke's Exit is already mapped."""
    assert exit_for(exc) == (line, code)


def test_anything_else_is_an_internal_error_that_points_at_the_log() -> None:
    """An exception predeploy did not foresee is exit 9, one line naming the bug's type and
    the first line of what it said."""
    line, code = exit_for(ValueError("bad\nthing"))
    assert code == 9
    assert line == (
        "predeploy: internal error (ValueError: bad): this is a bug in predeploy; run "
        "again with a log folder"
    )
    line, code = exit_for(KeyError("x"), "/var/log/predeploy/run.log")
    assert code == 9 and "\n" not in line
    # "the traceback is in" it, or (its disk failed) "could not be written": named either way
    assert line.startswith("predeploy: internal error (KeyError: 'x'): this is a bug")
    assert "log/predeploy/run.log" in line
