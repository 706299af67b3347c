"""Progress on a terminal: one line, rewritten, then cleared (the migration being applied,
a dump's tables); elsewhere a log event every 10 s. And a step's checklist line as it ends.

Only when stderr is a terminal, at the normal verbosity and without ``--json``: cron, CI,
a pm2 hook or a pipe get no control characters (the log has a ``migration_applied`` event
per migration), and ``-v`` shows those events instead. The line is cut to the terminal's
width, so that a carriage return always brings the cursor back to its start, and the
cursor is left at its start, so that whatever is written next (a warning) covers it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from predeploy._util import units
from predeploy.cli import output

if TYPE_CHECKING:
    from predeploy.backup.progress import Progress, ProgressFn
    from predeploy.commands.migrate_report import Applying
    from predeploy.commands.steps import Step

__all__ = ["CLEAR", "applying", "fit", "progress", "step_lines"]

CLEAR = "\r\x1b[K"  # to the line's start, and erase it


def applying(json_output: bool) -> Applying | None:
    """The apply's progress line, or None where it does not belong (see the module's doc)."""
    if json_output or output.current().verbosity != 0 or not sys.stderr.isatty() or _fleet():
        return None

    def show(name: str | None, place: int, total: int) -> None:
        text = "" if name is None else fit(f"applying {name}… ({place}/{total})")
        sys.stderr.write(CLEAR + text + ("\r" if text else ""))
        sys.stderr.flush()

    return show


def fit(text: str) -> str:
    """``text`` cut to the terminal's width (a carriage return then reaches its start)."""
    try:
        width = os.get_terminal_size(sys.stderr.fileno()).columns or 80  # 0: size unknown
    except OSError:
        width = 80
    return text if len(text) < width else text[: max(width - 2, 1)] + "…"


def progress(json_output: bool) -> ProgressFn:
    """A dump's or restore's progress on a terminal as one rewritten line; otherwise a log
    event every 10 s."""
    if sys.stderr.isatty() and not json_output and not _fleet():

        def show(p: Progress) -> None:  # cleared at the step's end, as applying's
            size = f", {units.size(p.bytes_done)}" if p.bytes_done else ""
            text = (
                "" if p.final else fit(f"{p.phase}: {p.tables_done}/{p.tables_total} tables{size}")
            )
            sys.stderr.write(CLEAR + text + ("\r" if text else ""))
            sys.stderr.flush()

        return show
    last = [0.0]

    def note(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= 10:
            last[0] = now
            structlog.get_logger("predeploy").info(
                "progress",
                phase=p.phase,
                tables_done=p.tables_done,
                tables_total=p.tables_total,
                bytes=p.bytes_done,
            )

    return note


def step_lines(json_output: bool) -> Callable[[Step], None] | None:
    """On a terminal (no --json), a checklist line per step as it ends."""
    if json_output or _fleet():  # a fleet shows a line per target instead
        return None
    from predeploy.cli.render_run import render_step  # noqa: PLC0415 (runs only)

    return lambda done: print(output.mask(render_step(done)), flush=True)


def _fleet() -> bool:
    from predeploy.cli import fleet_flags  # noqa: PLC0415 (tiny; avoids an import cycle)

    return fleet_flags.current().fleet
