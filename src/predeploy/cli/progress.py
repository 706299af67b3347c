"""The migration being applied, on a terminal: one line, rewritten, then cleared.

Only when stderr is a terminal, at the normal verbosity and without ``--json``: cron, CI,
a pm2 hook or a pipe get no control characters (the log has a ``migration_applied`` event
per migration), and ``-v`` shows those events instead. The line is cut to the terminal's
width, so that a carriage return always brings the cursor back to its start, and the
cursor is left at its start, so that whatever is written next (a warning) covers it.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from predeploy.cli import output

if TYPE_CHECKING:
    from predeploy.commands.migrate import Applying

__all__ = ["CLEAR", "applying", "fit"]

CLEAR = "\r\x1b[K"  # to the line's start, and erase it


def applying(json_output: bool) -> Applying | None:
    """The apply's progress line, or None where it does not belong (see the module's doc)."""
    if json_output or output.current().verbosity != 0 or not sys.stderr.isatty():
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
