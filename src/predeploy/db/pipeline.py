"""``conn.pipeline()`` that lets an interrupt stay an interrupt.

psycopg's ``Pipeline.__exit__`` waits for the pipeline's results; an interrupt raised
while it waits (Ctrl-C's KeyboardInterrupt, predeploy's Terminated, or the same raised in a
fleet's worker thread) stops that wait with results still queued, and the ``finally``
that leaves pipeline mode then fails ("cannot exit pipeline mode while busy"): the
OperationalError replaces the interrupt, and the run reported a crash instead of "stopped
by SIGTERM". Here the interrupt is raised again, after closing the connection, whose
state nobody knows any more (closing it rolls back its open transaction on the server).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from predeploy.db.connect import Conn

__all__ = ["pipeline"]


@contextmanager
def pipeline(conn: Conn) -> Iterator[None]:
    """``with conn.pipeline():`` the block, an interrupt during its exit kept as such."""
    try:
        with conn.pipeline():
            yield
    except psycopg.Error as exc:
        interrupt = _interrupt_behind(exc)
        if interrupt is None:
            raise
        conn.close()
        raise interrupt from None


def _interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (or subclass) that ``exc`` was raised while handling."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__context__
    return None
