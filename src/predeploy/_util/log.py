"""Logging: structlog, configured once per run by a task.

stderr gets readable console lines on a terminal (whatever ``--json`` says: that is the
report's format) and JSON lines otherwise; every run also writes JSON lines to its own file,
``<PREDEPLOY_LOG_DIR>/predeploy-<env>-<UTC time>-<run id>.log`` (removed at exit when the
run logged nothing: init, status and the like leave no empty files). Every event carries the env and
the run id, and every known password is scrubbed from every event.

Events go through structlog's own pipeline to a small two-way writer rather than
through the standard library's logging: a migration run logs once per migration,
and that path must stay cheap. What the libraries log through the standard library
(psycopg, sh, apprise, Python's warnings) joins that pipeline as ``library_log`` events:
in the run's log file, on stderr only with -v; never Python's last-resort handler, which
put psycopg's "error ignored terminating <Pipeline ...>" above the one error line.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from predeploy._util.redact import Scrubber

__all__ = [
    "FILE_ONLY",
    "REPORTED",
    "SENTENCE",
    "LogSetup",
    "configure",
    "current_run_id",
    "file_in_use",
    "log_disk_failed",
    "new_run_id",
    "prune",
]

# An event with this key set goes to the log file only: the task already tells
# the operator on stderr (its failure line), and one line is enough there.
FILE_ONLY = "file_only"
# An event with this key set says what the command's report (stdout) says too: on a
# terminal it stays off the screen unless -v (said once); in JSON logs it is kept.
REPORTED = "reported"
# An event with this key set is, on a terminal, one plain sentence ("warning: <its
# detail>"), like the report's own lines; the log file and JSON logs keep it structured.
SENTENCE = "sentence"


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def current_run_id() -> str:
    """The run id bound by ``configure`` (a new one if logging was never configured)."""
    return str(structlog.contextvars.get_contextvars().get("run_id") or new_run_id())


class _Scrub:
    """Mask every secret in event values, however deeply nested (see redact): the one
    processor both of the run's log sinks (stderr and its log file) go through."""

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber

    def __call__(self, _logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        for key, value in event.items():
            event[key] = self.scrubber.value(value)
        return event


class _Render:
    """The last processor: JSON for the file, and console or JSON text for stderr."""

    def __init__(self, console: bool, colors: bool, reported_on_screen: bool = False) -> None:
        self.console = structlog.dev.ConsoleRenderer(colors=colors) if console else None
        self.reported_on_screen = reported_on_screen

    def __call__(
        self, logger: WrappedLogger, name: str, event: EventDict
    ) -> tuple[tuple[str, str | None], dict[str, Any]]:
        reported = event.pop(REPORTED, False)
        sentence = event.pop(SENTENCE, False)
        line = json.dumps(event, default=str)
        said = reported and self.console is not None and not self.reported_on_screen
        if event.get(FILE_ONLY) or said:
            return (line, None), {}
        if self.console is None:
            screen = line
        elif sentence:
            screen = f"{event.get('level', name)}: {event.get('detail', event.get('event'))}"
        else:
            screen = str(self.console(logger, name, dict(event)))
        return (line, screen), {}


class _Writer:
    """Writes each rendered event to stderr (from ``screen_level`` up) and to the log file.

    A sink that fails (a full or read-only disk, an I/O error, stderr closed) never stops
    the run: the log file's failure is said once on stderr, then the run goes on without
    it; stderr's is noted in the log file. Later writes to a failed sink are skipped.
    """

    def __init__(
        self,
        stream: IO[str],
        file: BinaryIO | None,
        screen_level: int = 20,
        path: Path | None = None,
    ) -> None:
        self.stream: IO[str] | None = stream
        self.file, self.screen_level, self.path = file, screen_level, path
        self.disk_failed = False  # the log file failed, and stderr was told
        self._failing = threading.Lock()

    def _write(self, level: int, line: str, screen: str | None) -> None:
        if screen is not None and level >= self.screen_level and self.stream is not None:
            try:
                self.stream.write(screen + "\n")
                self.stream.flush()
            except (OSError, ValueError) as exc:  # ValueError: a closed stream
                _give_up(self.stream)
                self.stream = None
                self._said_in_file("stderr_unwritable", exc)
        if self.file is not None and level >= 20:
            try:
                _write_all(self.file, (line + "\n").encode("utf-8", "backslashreplace"))
            except (OSError, ValueError) as exc:
                self._file_failed(exc)

    def finish(self) -> None:
        """At exit: a log file the run wrote nothing into is removed (no empty litter);
        one with events stays, open until the process ends."""
        file, path = self.file, self.path
        if file is None or path is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if os.fstat(file.fileno()).st_size == 0:
                self.file = None
                file.close()
                path.unlink()

    def _file_failed(self, exc: OSError | ValueError) -> None:
        with self._failing:  # a progress thread may fail on it at the same moment: said once
            file, self.file = self.file, None
        if file is None:
            return
        self.disk_failed = True
        with contextlib.suppress(OSError, ValueError):
            file.close()
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        gone = ""
        with contextlib.suppress(OSError):  # a file it could not write a byte of: no litter
            if self.path is not None and self.path.stat().st_size == 0:
                self.path.unlink()
                gone = " (removed: empty)"
        structlog.get_logger(__name__).warning(
            "log_file_failed",
            detail=f"cannot write the log file {self.path}{gone}: {why}; the run goes on "
            f"without it",
        )

    def _said_in_file(self, event: str, exc: OSError | ValueError) -> None:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        structlog.get_logger(__name__).warning(event, detail=f"cannot write to stderr: {why}")

    def debug(self, line: str, screen: str | None) -> None:
        self._write(10, line, screen)

    def info(self, line: str, screen: str | None) -> None:
        self._write(20, line, screen)

    def warning(self, line: str, screen: str | None) -> None:
        self._write(30, line, screen)

    def error(self, line: str, screen: str | None) -> None:
        self._write(40, line, screen)

    def critical(self, line: str, screen: str | None) -> None:
        self._write(50, line, screen)

    msg = info
    warn = warning
    exception = error


def _give_up(stream: IO[str]) -> None:
    """A stderr that cannot be written is replaced by /dev/null: what is left in its buffer
    would fail again when the interpreter flushes it at exit, and turn exit 0 into 120."""
    if stream is sys.stderr:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (for the rest of the process)


def _write_all(file: BinaryIO, data: bytes) -> None:
    """All of ``data`` to an unbuffered file (a disk that fills up takes part of a write):
    nothing is left in a buffer to fail again, or to be reported, when the process ends."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


class _LibraryLogs(logging.Handler):
    """The standard library's log records as this run's events (see the module's doc)."""

    def __init__(self, on_screen: bool) -> None:
        super().__init__()
        self.on_screen = on_screen

    def emit(self, record: logging.LogRecord) -> None:
        fields: dict[str, Any] = {"logger": record.name, "detail": record.getMessage()}
        if record.exc_info:
            fields["exc_info"] = record.exc_info
        if not self.on_screen:
            fields[FILE_ONLY] = True
        structlog.get_logger("predeploy.libraries").log(record.levelno, "library_log", **fields)

    def handleError(self, record: logging.LogRecord) -> None:
        """A library line that cannot be logged is dropped, never a traceback on stderr."""


def _route_library_logs(on_screen: bool) -> None:
    """Send the standard library's records (warnings up; info up with -v) to the run's log."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _LibraryLogs)]:
        root.removeHandler(handler)
    root.addHandler(_LibraryLogs(on_screen))
    root.setLevel(logging.INFO if on_screen else logging.WARNING)
    logging.captureWarnings(True)


class LogSetup:
    """The result of ``configure``: where this run's log file is, if any."""

    def __init__(self, run_id: str, log_file: Path | None, file_error: str | None) -> None:
        self.run_id = run_id
        self.log_file = log_file
        self.file_error = file_error


def configure(
    *,
    env: str,
    log_dir: Path | None,
    json_output: bool,
    secrets: Iterable[str] = (),
    scrubber: Scrubber | None = None,
    stream: IO[str] | None = None,
    run_id: str | None = None,
    colors: bool = False,
    level: int = 20,
) -> LogSetup:
    """Configure structlog for one run; returns the run's setup.

    ``level`` filters stderr only (10 debug, 20 info, 30 warnings and errors): the log file
    always gets every event from info up. ``scrubber`` (the settings' one, else one built
    from ``secrets``) masks every event.
    """
    stream = sys.stderr if stream is None else stream
    run_id = run_id or new_run_id()
    log_file, file_error, file = _open_log_file(log_dir, env, run_id)
    writer = _Writer(stream, file, screen_level=level, path=log_file)
    processors = _processors(
        scrubber if scrubber is not None else Scrubber(secrets),
        # with --json the report is no text on the terminal: what it says is shown
        _Render(
            console=stream.isatty(), colors=colors, reported_on_screen=level <= 10 or json_output
        ),
    )
    _install(writer, processors, level)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(env=env, run_id=run_id)
    _route_library_logs(on_screen=level <= 10)
    if file_error is not None:
        writer.disk_failed = True
        structlog.get_logger(__name__).warning("log_file_unavailable", detail=file_error)
    return LogSetup(run_id, log_file, file_error)


def _install(writer: _Writer, processors: list[Processor], level: int) -> None:
    """Make ``writer`` the run's one sink (for file_in_use), flushed at exit."""
    global _writer  # noqa: PLW0603 (one run per process: its writer, for file_in_use)
    _writer = writer
    atexit.register(writer.finish)
    structlog.configure(
        processors=processors,
        logger_factory=lambda *_args: writer,
        wrapper_class=structlog.make_filtering_bound_logger(min(level, 20)),
        cache_logger_on_first_use=False,
    )


def _processors(scrubber: Scrubber, render: _Render) -> list[Processor]:
    """Every event: the bound context, its level and UTC time, the traceback as text,
    masked by ``scrubber``, then rendered."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _Scrub(scrubber),
        render,
    ]


_writer: _Writer | None = None


def file_in_use() -> bool:
    """Whether the run's log file is still written (a full disk may have ended it)."""
    return _writer is not None and _writer.file is not None


def log_disk_failed() -> bool:
    """Whether this run's log folder failed it, and stderr was told so (once): the log file
    could not be made, or a write to it failed."""
    return _writer is not None and _writer.disk_failed


def _open_log_file(
    log_dir: Path | None, env: str, run_id: str
) -> tuple[Path | None, str | None, BinaryIO | None]:
    if log_dir is None:
        return None, None, None
    path = log_dir / f"predeploy-{env}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{run_id}.log"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        file = path.open("ab", buffering=0)  # unbuffered: see _write_all
    except OSError as exc:
        return None, f"{log_dir}: {exc.strerror or exc}", None
    return path, None, file


def prune(log_dir: Path, keep_days: int, now: float | None = None) -> list[Path]:
    """Delete run logs and runbooks (ours by name) older than ``keep_days``; 0 keeps all."""
    if keep_days <= 0 or not log_dir.is_dir():
        return []
    cutoff = (now if now is not None else time.time()) - keep_days * 86400
    removed = []
    for path in [*log_dir.glob("predeploy-*.log"), *log_dir.glob("runbook-*.txt")]:
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except OSError:
            continue  # another run's file, gone meanwhile, or not ours to delete
    if removed:
        structlog.get_logger(__name__).info("logs_pruned", files=len(removed), keep_days=keep_days)
    return removed
