"""Where a command's output goes, and how it looks.

Results go to stdout: human-readable text, or one JSON object with ``--json``, whatever
stdout is (a pipe, a file). Logs go to stderr: readable warnings and errors on a terminal,
JSON lines from info up otherwise or with ``--json``; ``-v`` shows every event, ``-q``
only errors.
Colour only on a terminal, never with ``NO_COLOR`` set or ``--no-color``. Prompts go to
the controlling terminal (see ``predeploy.cli.prompt``), never to stdout.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["Output", "colors", "current", "emit", "log_level", "set_current"]


@dataclass(frozen=True)
class Output:
    """The global flags: ``-v``/``-q`` and ``--no-color``."""

    verbosity: int = 0  # -1 quiet, 0 normal, 1 verbose
    no_color: bool = False


_current = Output()


def set_current(output: Output) -> None:
    """Set by the program from its core flags, before a task runs."""
    global _current  # noqa: PLW0603 (the CLI's own flags, read by its adapters only)
    _current = output


def current() -> Output:
    return _current


def colors() -> bool:
    """Colour on stderr: a terminal, no NO_COLOR, no --no-color."""
    return sys.stderr.isatty() and not os.environ.get("NO_COLOR") and not _current.no_color


def log_level(json_output: bool) -> int:
    """What stderr shows. On a terminal the steps and the report tell the story: warnings and
    errors only (``-v``: every event). Elsewhere (cron, CI, ``--json``) every event from info
    up, as JSON lines. ``-q``: errors only. The log file always has every event."""
    if _current.verbosity < 0:
        return 40
    if _current.verbosity > 0:
        return 10
    console = sys.stderr.isatty() and not json_output
    return 30 if console else 20


def emit(data: dict[str, Any], human: str, json_output: bool) -> None:
    """A command's result on stdout: one JSON object with --json, else the human text."""
    if json_output:
        print(json.dumps(data, default=str, sort_keys=True), flush=True)
    elif human:
        print(human, flush=True)
