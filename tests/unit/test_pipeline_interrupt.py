"""db.pipeline finds the interrupt psycopg's pipeline exit replaced (pure: exception chains)."""

from __future__ import annotations

import psycopg

from predeploy.db.pipeline import _interrupt_behind
from predeploy.errors import Terminated


def _chained(first: BaseException, *then: BaseException) -> BaseException:
    """``then``'s last raised while handling the one before ... while handling ``first``."""
    context = first
    for exc in then:
        exc.__context__ = context
        context = exc
    return context


def test_the_interrupt_under_psycopg_errors_is_found() -> None:
    """Terminated, then 'cannot exit pipeline mode', then a failed ROLLBACK: Terminated."""
    stop = Terminated(15)
    exc = _chained(
        stop,
        psycopg.OperationalError("cannot exit pipeline mode while busy"),
        psycopg.OperationalError("sending query failed"),
    )
    assert _interrupt_behind(exc) is stop


def test_an_ordinary_error_is_left_alone() -> None:
    """No interrupt in the chain (a cycle included): None, and the error is raised as is."""
    first = psycopg.OperationalError("server closed the connection")
    second = psycopg.OperationalError("again")
    second.__context__ = first
    first.__context__ = second
    assert _interrupt_behind(second) is None
