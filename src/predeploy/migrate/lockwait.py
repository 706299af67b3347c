"""After a lock timeout: who holds the script's tables, the wait, the next try or giving up.

The sessions that held locks on the tables from before the try are watched, and the next
try starts as soon as they are gone (or after a growing pause when none is found). While
they stay, trying again could only stall the application once more, so a pause that ends
with them still there counts as a try without touching the table. When the tries run out
the error names them.
"""

from __future__ import annotations

import time

import psycopg
import structlog

from predeploy._util import poll
from predeploy.db.connect import Conn
from predeploy.errors import MigrationError
from predeploy.migrate import blockers, history
from predeploy.migrate.outcome import RunOptions, Unit

__all__ = ["backoff", "holders", "next_try"]

log = structlog.get_logger(__name__)
_FIRST_PAUSE, _LAST_PAUSE = 0.5, 10.0
_POLL = 0.1  # how often a lock-timed-out migration looks whether its holders are gone


def backoff(attempt: int) -> float:
    """Pause before retry ``attempt`` (1-based): 0.5 s doubling up to 10 s."""
    return poll.backoff(attempt, _FIRST_PAUSE, _LAST_PAUSE)


def holders(conn: Conn, options: RunOptions, unit: Unit) -> list[blockers.Blocker]:
    """Who holds ``unit``'s tables: the blocker scan's sessions, other roles' included."""
    lock_timeout = options.limits.lock_timeout
    return blockers.scan(conn, unit.tables, lock_timeout, uncertain=True)


def next_try(
    conn: Conn,
    options: RunOptions,
    unit: Unit,
    *,
    attempt: int,
    exc: psycopg.Error,
    row_id: str | None = None,
    retries: int | None = None,
) -> int:
    """After try ``attempt`` hit the lock timeout: wait, then return the next try's number.

    Gives up (MigrationError, naming who held the locks) after ``retries`` (default
    PREDEPLOY_LOCK_RETRIES).
    """
    limit = options.lock_retries if retries is None else retries
    # the sessions that held its tables since before the try (older than the lock
    # timeout) or that sit idle in a transaction: the blocker scan's definition
    named: list[str] = []
    if attempt > limit:  # no retries (a rehearsal): name them all the same
        named = [blockers.describe(b) for b in holders(conn, options, unit)]
    while attempt <= limit:
        seen = holders(conn, options, unit)
        named = [blockers.describe(b) for b in seen]
        if _waited_out(conn, options, unit, attempt=attempt, seen=seen, named=named):
            return attempt + 1
        attempt += 1  # still there: trying now would only stall the application again
        log.info("lock_retry_skipped", migration=unit.name, attempt=attempt)
    message = _given_up(options, unit, attempt, named)
    if row_id is not None:
        history.record_failure(conn, options.table, row_id, message, 0)
    raise MigrationError(message) from exc


def _waited_out(
    conn: Conn,
    options: RunOptions,
    unit: Unit,
    *,
    attempt: int,
    seen: list[blockers.Blocker],
    named: list[str],
) -> bool:
    """Pause before the next try; False when the holders ``seen`` outlasted the pause."""
    pause = backoff(attempt)
    log.warning(
        "lock_timeout_retry",
        migration=unit.name,
        attempt=attempt,
        pause_s=pause,
        blockers=named or None,
    )
    if not any(b.certain for b in seen):  # none, or other roles' that come and go
        time.sleep(pause)
        return True
    lock_timeout = options.limits.lock_timeout
    return not blockers.wait_until_gone(conn, unit.tables, lock_timeout, pause, pause=_POLL)


def _given_up(options: RunOptions, unit: Unit, attempt: int, named: list[str]) -> str:
    who = "; ".join(named) if named else "a session that finished before it could be named"
    return (
        f"{unit.file} of {unit.name} could not get its locks within PREDEPLOY_LOCK_TIMEOUT "
        f"({options.limits.lock_timeout:g}s) in {attempt} tries; blocked by {who}: retry when "
        f"it ends, or end it (SELECT pg_terminate_backend(pid)); nothing was changed"
    )
