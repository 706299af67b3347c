"""The blocker scan: who would make a migration's lock wait, found just before applying.

A migration that needs an ACCESS EXCLUSIVE lock queues behind any session holding
a lock on its table, and every application query then queues behind it. The
dangerous sessions are those idle in a transaction (they hold their locks until
someone ends them) and those running longer than PREDEPLOY_BLOCKER_MAX_AGE. This lists
them, on the tables the pending migrations name (found with pglast), holding or
waiting for a lock there.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from predeploy.migrate.discovery import Migration
from predeploy.postgres.relations import oids
from predeploy.postgres.sessions import Conn

__all__ = ["Blocker", "describe", "scan", "tables_of", "wait_until_gone"]

_SCAN = """
SELECT a.pid, a.usename, coalesce(nullif(a.application_name, ''), '(none)'), a.state,
       extract(epoch FROM now() - coalesce(a.xact_start, a.query_start, a.backend_start)),
       a.query_start, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120),
       array_agg(DISTINCT l.relation::regclass::text ORDER BY l.relation::regclass::text),
       bool_or(NOT l.granted)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.relation = ANY(%(oids)s)
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND a.pid <> pg_backend_pid()
  AND (a.state LIKE 'idle in transaction%%'
       OR now() - coalesce(a.xact_start, a.query_start) > make_interval(secs => %(max_age)s))
GROUP BY a.pid, a.usename, a.application_name, a.state, a.xact_start, a.query_start,
         a.backend_start, a.query
ORDER BY 5 DESC
"""


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

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def tables_of(pending: Iterable[Migration]) -> set[str]:
    """Every relation the pending migrations name (as written in their SQL)."""
    return {name for m in pending for s in m.parsed.statements for name in s.tables}


def scan(conn: Conn, names: Iterable[str], max_age: float) -> list[Blocker]:
    """Sessions idle in a transaction or older than ``max_age`` with locks on ``names``."""
    return _scan(conn, _oids(conn, names), max_age)


def wait_until_gone(
    conn: Conn, names: Iterable[str], max_age: float, wait: float, pause: float = 0.25
) -> list[Blocker]:
    """Scan every ``pause`` until no blocker is left or ``wait`` seconds have passed; the
    ones left."""
    oids = _oids(conn, names)
    deadline = time.monotonic() + wait
    while True:
        found = _scan(conn, oids, max_age)
        remaining = deadline - time.monotonic()
        if not found or remaining <= 0:
            return found
        time.sleep(min(pause, remaining))


def _oids(conn: Conn, names: Iterable[str]) -> list[int]:
    return oids(conn, names)


def _scan(conn: Conn, oids: list[int], max_age: float) -> list[Blocker]:
    if not oids:
        return []
    rows = conn.execute(_SCAN, {"oids": oids, "max_age": max_age}).fetchall()
    return [
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
        )
        for pid, user, application, state, age, query_start, query, tables, waiting in rows
    ]


def describe(blocker: Blocker) -> str:
    """pid 4242 (user app, application psql, idle in transaction for 25s, since 13:50:01, on
    public.events): SELECT ..."""
    since = f", since {blocker.query_start:%H:%M:%S}" if blocker.query_start else ""
    verb = "waiting for" if blocker.waiting else "on"
    return (
        f"pid {blocker.pid} (user {blocker.user}, application {blocker.application}, "
        f"{blocker.state} for {blocker.age_s:.0f}s{since}, {verb} {', '.join(blocker.tables)})"
        f": {blocker.query}"
    )
