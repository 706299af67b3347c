"""SIGTERM as the CLI handles it: raised in the main thread as ``Terminated``.

pm2, systemd and CI stop a process with SIGTERM. Python's default is to die at once,
leaving children running, partial files, no runbook and no audit row. Raised like
Ctrl-C's KeyboardInterrupt instead (``Terminated`` is one), it unwinds the run: psycopg
cancels the running query, children are killed, partial files removed, locks released,
and the run's report, runbook and audit row are written before the exit (143).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from predeploy.errors import Terminated

__all__ = ["handled"]


def _raise_terminated(_signum: int, _frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def handled() -> Iterator[None]:
    """For the block, SIGTERM raises Terminated in the main thread (a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
