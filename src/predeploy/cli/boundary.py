"""The error boundary: every way a command can end becomes one line and an exit code.

A ``PredeployError`` is the library's own: its message is the line, its ``exit_code``
the code. SIGINT, SIGTERM and SIGHUP end with 130, 143 and 129. Anything else is a bug:
the traceback goes to the run's log file only, and the line names that file (exit 9).
Never a traceback on the operator's screen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, TypeVar

import psycopg
import structlog
from invoke.exceptions import Exit

from predeploy._util import log as log_mod
from predeploy.cli import output
from predeploy.db.failures import message_of
from predeploy.errors import InternalError, PredeployError, Terminated

__all__ = ["fail", "failed", "guarded", "report_failure"]

T = TypeVar("T")


def fail(error: PredeployError) -> NoReturn:
    """End the command with ``error``'s line and exit code."""
    raise Exit(f"predeploy: {error.message}", error.exit_code)


def failed(error: PredeployError) -> NoReturn:
    """End a run that returned its report with ``error``: the line goes to the run's log
    file too (a failure outside any step, a gate, is otherwise on stderr only)."""
    _log_failure(error)
    fail(error)


def _log_failure(error: PredeployError) -> None:
    structlog.get_logger("predeploy").error(
        "run_failed",
        error=type(error).__name__,
        detail=error.message,
        exit_code=error.exit_code,
        **{log_mod.FILE_ONLY: True},
    )


def guarded(action: Callable[[], T], log_file: str | None, *, json_output: bool = False) -> T:
    """Run ``action``; whatever escapes it ends the command with one line and its code (and
    with ``json_output``, one JSON object on stdout saying so: ``{"error", "exit_code"}``)."""
    try:
        return _guarded(action, log_file)
    except Exit as exc:
        if json_output and exc.code:
            report_failure(str(exc.message or "").removeprefix("predeploy: "), exc.code)
        raise


def report_failure(line: str, exit_code: int) -> None:
    """A failed command's --json result: its error line and exit code."""
    if output.emitted():  # its report (status --check's, migrate's) carries the outcome
        return
    output.emit({"error": line, "exit_code": exit_code}, "", json_output=True)


def _guarded(action: Callable[[], T], log_file: str | None) -> T:
    logger = structlog.get_logger("predeploy")
    try:
        return action()
    except PredeployError as exc:
        _log_failure(exc)
        fail(exc)
    except Terminated as exc:
        logger.warning("terminated", signal=exc.signal)
        raise Exit(f"predeploy: stopped by {exc.signal}", exc.exit_code) from None
    except KeyboardInterrupt:
        logger.warning("interrupted", signal="SIGINT")
        raise Exit("predeploy: interrupted (SIGINT)", 130) from None
    except Exit:
        raise
    except psycopg.OperationalError as exc:  # the connection broke where nothing expected it
        detail = message_of(exc)
        logger.error("connection_lost", detail=detail)
        raise Exit(f"predeploy: the database connection failed mid-run: {detail}", 3) from None
    except Exception as exc:
        logger.error("internal_error", exc_info=True, **{log_mod.FILE_ONLY: True})
        where = f"the traceback is in {log_file}" if log_file else "run again with a log folder"
        if log_file and not log_mod.file_in_use():  # the disk took it away (warned above)
            where = f"its log file {log_file} could not be written: run again on a writable disk"
        fail(
            InternalError(
                f"internal error ({type(exc).__name__}: {message_of(exc)}): this is a bug in "
                f"predeploy; {where}"
            )
        )
