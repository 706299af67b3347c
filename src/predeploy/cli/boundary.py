"""The error boundary: every way a command can end becomes one line and an exit code.

``exit_for`` is the one mapper (the codes are errors.py's table): a ``PredeployError`` is
the library's own, its message the line and its ``exit_code`` the code; SIGINT, SIGTERM and
SIGHUP end with 130, 143 and 129; a connection that broke where nothing expected it is
exit 3. Anything else is a bug: the traceback goes to the run's log file only, and the line
names that file (exit 9). Never a traceback on the operator's screen.
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
from predeploy.errors import (
    SIGINT_EXIT,
    DatabaseUnreachable,
    InternalError,
    Interrupted,
    PredeployError,
    Terminated,
)

__all__ = ["exit_for", "fail", "failed", "guarded", "report_failure"]

T = TypeVar("T")


def exit_for(exc: BaseException, log_file: str | None = None) -> tuple[str, int]:
    """The final line and exit code of a command that ``exc`` ended (``log_file``: where
    an internal error's traceback went, if anywhere)."""
    if isinstance(exc, Exit):  # already mapped (invoke's own, or a nested boundary)
        return str(exc.message or ""), exc.code
    error = _as_error(exc, log_file)
    return f"predeploy: {error.message}", error.exit_code


def _as_error(exc: BaseException, log_file: str | None) -> PredeployError:
    if isinstance(exc, PredeployError):
        return exc
    if isinstance(exc, Terminated):  # SIGTERM, SIGHUP
        return Interrupted(f"stopped by {exc.signal}", exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted("interrupted (SIGINT)", SIGINT_EXIT)
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseUnreachable(f"the database connection failed mid-run: {message_of(exc)}")
    where = f"the traceback is in {log_file}" if log_file else "run again with a log folder"
    if log_file and not log_mod.file_in_use():  # the disk took it away (warned above)
        where = f"its log file {log_file} could not be written: run again on a writable disk"
    return InternalError(
        f"internal error ({type(exc).__name__}: {message_of(exc)}): this is a bug in "
        f"predeploy; {where}"
    )


def fail(error: BaseException, log_file: str | None = None) -> NoReturn:
    """End the command with ``error``'s line and exit code."""
    line, code = exit_for(error, log_file)
    raise Exit(line, code) from None


def failed(error: PredeployError) -> NoReturn:
    """End a run that returned its report with ``error``: the line goes to the run's log
    file too (a failure outside any step, a gate, is otherwise on stderr only)."""
    _log_ending(error)
    fail(error)


def _log_ending(exc: BaseException) -> None:
    """The log event of a command's end by ``exc`` (an internal error's with its traceback,
    in the log file only)."""
    logger = structlog.get_logger("predeploy")
    if isinstance(exc, PredeployError):
        logger.error(
            "run_failed",
            error=type(exc).__name__,
            detail=exc.message,
            exit_code=exc.exit_code,
            **{log_mod.FILE_ONLY: True},
        )
    elif isinstance(exc, Terminated):
        logger.warning("terminated", signal=exc.signal)
    elif isinstance(exc, KeyboardInterrupt):
        logger.warning("interrupted", signal="SIGINT")
    elif isinstance(exc, psycopg.OperationalError):
        logger.error("connection_lost", detail=message_of(exc))
    elif not isinstance(exc, Exit):
        logger.error("internal_error", exc_info=exc, **{log_mod.FILE_ONLY: True})


def guarded(action: Callable[[], T], log_file: str | None, *, json_output: bool = False) -> T:
    """Run ``action``; whatever escapes it ends the command with one line and its code (and
    with ``json_output``, one JSON object on stdout saying so: ``{"error", "exit_code"}``)."""
    try:
        return action()
    except (Exception, KeyboardInterrupt) as exc:
        _log_ending(exc)
        line, code = exit_for(exc, log_file)
        if json_output and code:
            report_failure(line.removeprefix("predeploy: "), code)
        raise Exit(line, code) from None


def report_failure(line: str, exit_code: int) -> None:
    """A failed command's --json result: its error line and exit code."""
    if output.emitted():  # its report (status --check's, migrate's) carries the outcome
        return
    output.emit({"error": line, "exit_code": exit_code}, "", json_output=True)
