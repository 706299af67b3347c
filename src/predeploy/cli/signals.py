"""SIGTERM and SIGHUP as the CLI handles them: raised in the main thread as ``Terminated``.

pm2, systemd and CI stop a process with SIGTERM; a dropped ssh session or a closed
terminal sends SIGHUP. Python's default is to die at once, leaving children running, the
server going on with the running query, partial files, no runbook and no audit row.
Raised like Ctrl-C's KeyboardInterrupt instead (``Terminated`` is one), it unwinds the
run: psycopg cancels the running query, children are killed, partial files removed, locks
released, and the run's report, runbook and audit row are written before the exit (143,
129). A hung-up terminal's EIO is discarded like a closed pipe (``output.guard_streams``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import FrameType

from predeploy.errors import Terminated

__all__ = ["HANDLED", "handled"]

HANDLED = (signal.SIGTERM, signal.SIGHUP)


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextmanager
def handled() -> Iterator[None]:
    """For the block, SIGTERM and SIGHUP raise Terminated in the main thread (a no-op
    elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with ExitStack() as restore:
        for signum in HANDLED:
            previous = signal.signal(signum, _raise_terminated)
            restore.callback(signal.signal, signum, previous)
        yield
