"""The blocker scan: who would make a migration's lock wait, found just before applying.

A migration that needs an ACCESS EXCLUSIVE lock queues behind any session holding
a lock on its table, and every application query then queues behind it. The
dangerous sessions are those idle in a transaction (they hold their locks until
someone ends them) and those running longer than PREDEPLOY_BLOCKER_MAX_AGE. This lists
them, on the tables the pending migrations name (found with pglast), holding or
waiting for a lock there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from predeploy._util.poll import poll
from predeploy.db.catalog import lock_holders_of, oids
from predeploy.db.connect import Conn
from predeploy.migrate.discovery import Migration

__all__ = ["Blocker", "describe", "scan", "tables_of", "wait_until_gone"]


@dataclass(frozen=True)
class Blocker:
    pid: int
    user: str
    application: str
    state: str
    age_s: float  # since its transaction (or query) started
    query_start: datetime | None
    query: str  # its current or last statement, shortened
    tables: tuple[str, ...]
    waiting: bool  # waiting for a lock itself rather than holding one
    hidden: bool = False  # another role's session: its state, age and query are not shown
    strong: bool = False  # holds or wants more than a read or a row write's lock

    @property
    def certain(self) -> bool:
        """Known to be in the way: visible, or hidden but queued or holding a strong lock
        (an application's reads and row writes take weak ones and come and go)."""
        return not self.hidden or self.waiting or self.strong

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def tables_of(pending: Iterable[Migration]) -> set[str]:
    """Every relation the pending migrations name (as written in their SQL)."""
    return {name for m in pending for s in m.parsed.statements for name in s.tables}


def scan(
    conn: Conn, names: Iterable[str], max_age: float, *, uncertain: bool = False
) -> list[Blocker]:
    """Sessions idle in a transaction or older than ``max_age`` with locks on ``names``, and
    other roles' sessions whose state is hidden (``uncertain``: all of them, else those
    certainly in the way)."""
    return _scan(conn, _oids(conn, names), max_age, uncertain)


def wait_until_gone(
    conn: Conn,
    names: Iterable[str],
    max_age: float,
    wait: float,
    pause: float = 0.25,
    *,
    uncertain: bool = False,
) -> list[Blocker]:
    """Scan every ``pause`` until no blocker is left or ``wait`` seconds have passed; the
    ones left."""
    oids = _oids(conn, names)
    return poll(
        lambda: _scan(conn, oids, max_age, uncertain), wait, pause=pause, done=lambda f: not f
    )


def _oids(conn: Conn, names: Iterable[str]) -> list[int]:
    return oids(conn, names)


def _scan(conn: Conn, oids: list[int], max_age: float, uncertain: bool) -> list[Blocker]:
    if not oids:
        return []
    rows = lock_holders_of(conn, oids, max_age)
    found = [
        Blocker(
            pid=int(pid),
            user=str(user),
            application=str(application),
            state=str(state),
            age_s=round(float(age or 0), 1),
            query_start=query_start,
            query=str(query or ""),
            tables=tuple(tables),
            waiting=bool(waiting),
            hidden=state == "hidden",
            strong=bool(strong),
        )
        for pid, user, application, state, age, query_start, query, tables, waiting, strong in rows
    ]
    return found if uncertain else [b for b in found if b.certain]


def describe(blocker: Blocker) -> str:
    """pid 4242 (user app, application psql, idle in transaction for 25s, since 13:50:01, on
    public.events): SELECT ..."""
    verb = "waiting for" if blocker.waiting else "on"
    if blocker.hidden:
        return (
            f"pid {blocker.pid} (user {blocker.user}, application {blocker.application}, "
            f"{verb} {', '.join(blocker.tables)}; its state and query are hidden from this "
            f"role: GRANT pg_read_all_stats to it to see them)"
        )
    since = f", since {blocker.query_start:%H:%M:%S}" if blocker.query_start else ""
    return (
        f"pid {blocker.pid} (user {blocker.user}, application {blocker.application}, "
        f"{blocker.state} for {blocker.age_s:.0f}s{since}, {verb} {', '.join(blocker.tables)})"
        f": {blocker.query.rstrip('; ')}"  # its own ';' is not a separator of ours
    )
