"""What the catalogue says: relations, user tables, and the sessions that hold locks.

Relations named in migrations, found in the live database: their table, size and rows.
Lint uses the sizes (a finding on a large table is more severe), the blocker scan
the table oids (who holds or waits for a lock on them). A name that does not
exist yet (a table the migration creates) is simply absent from the result. An
index resolves to its table: that is what its locks and its size concern.

Every question about lock holders is asked here: who holds an advisory lock, who holds
or queues for an ACCESS EXCLUSIVE lock ("blocked by ..."), who holds a lock on given
tables (the blocker scan), which of our statements waits on a lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg_errors

if TYPE_CHECKING:  # connect imports failures, which imports this module
    from predeploy.db.connect import Conn

__all__ = [
    "LiveTable",
    "advisory_holder",
    "blocked_by",
    "describe_lock_holders",
    "lock_holders_of",
    "lock_waiter",
    "oids",
    "resolve",
    "size_expression",
    "user_tables",
]

# pg_total_relation_size takes an ACCESS SHARE lock on the table and its indexes; the
# estimate from pg_class (as of the last VACUUM/ANALYZE) takes none
_ESTIMATE = """((SELECT r.relpages + coalesce((SELECT relpages FROM pg_class
                                             WHERE oid = r.reltoastrelid), 0)
   FROM pg_class r WHERE r.oid = {oid})
  + coalesce((SELECT sum(ic.relpages) FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
              WHERE x.indrelid = {oid}), 0))::bigint * current_setting('block_size')::bigint"""


def size_expression(oid: str, *, exact: bool) -> str:
    """SQL for the total size of the relation whose oid is the SQL ``oid``: exact (takes a
    lock) or pg_class's estimate (takes none)."""
    return f"pg_total_relation_size({oid})" if exact else _ESTIMATE.replace("{oid}", oid)


_RESOLVE = """
SELECT n.name, t.oid, quote_ident(tn.nspname) || '.' || quote_ident(t.relname),
       CASE WHEN t.reltuples >= 0 THEN t.reltuples::bigint ELSE coalesce(s.n_live_tup, 0) END,
       {size}
FROM unnest(%(schemas)s::text[], %(names)s::text[], %(shown)s::text[]) AS n(schema, relname, name)
JOIN pg_class c ON c.relname = n.relname
JOIN pg_namespace cn ON cn.oid = c.relnamespace
  AND (cn.nspname = n.schema OR (n.schema = '' AND pg_table_is_visible(c.oid)))
LEFT JOIN pg_index i ON i.indexrelid = c.oid
JOIN pg_class t ON t.oid = coalesce(i.indrelid, c.oid)
JOIN pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = t.oid
"""


@dataclass(frozen=True)
class LiveTable:
    """A table in the database: the name a migration used for it, its size and rows."""

    name: str  # as the migration named it (an index's name resolves to its table)
    oid: int
    table: str  # schema-qualified, quoted where needed
    rows: int  # the planner's estimate (pg_class.reltuples), else pg_stat_user_tables'
    bytes: int  # pg_total_relation_size: heap, indexes and TOAST
    estimated: bool = False  # the table was locked: its size is pg_class's estimate

    def as_dict(self) -> dict[str, object]:
        return {"table": self.table, "rows": self.rows, "bytes": self.bytes}


def resolve(conn: Conn, names: Iterable[str]) -> dict[str, LiveTable]:
    """The existing tables behind ``names`` ("schema.name" or "name"), by name.

    Sizes are exact unless a table is locked by another session (the session's lock
    timeout expires): then every size is pg_class's estimate, so a locked table never
    makes a read wait or fail.
    """
    unique = list(dict.fromkeys(names))
    if not unique:
        return {}
    try:
        return _resolve(conn, unique, size_expression("t.oid", exact=True), estimated=False)
    except pg_errors.LockNotAvailable:
        return _resolve(conn, unique, size_expression("t.oid", exact=False), estimated=True)


def oids(conn: Conn, names: Iterable[str]) -> list[int]:
    """The oids of the existing tables behind ``names``; takes no lock on them."""
    unique = list(dict.fromkeys(names))
    if not unique:
        return []
    return sorted({t.oid for t in _resolve(conn, unique, "0", estimated=True).values()})


def _resolve(conn: Conn, unique: list[str], size: str, *, estimated: bool) -> dict[str, LiveTable]:
    split = [name.split(".", 1) if "." in name else ["", name] for name in unique]
    query = _RESOLVE.replace("{size}", size)
    rows = conn.execute(
        query,
        {
            "schemas": [schema for schema, _ in split],
            "names": [relname for _, relname in split],
            "shown": unique,
        },
    ).fetchall()
    return {
        str(name): LiveTable(str(name), int(oid), str(table), int(live), int(size), estimated)
        for name, oid, table, live, size in rows
    }


# the tables a dump must hold, and a restore replaces: every table but the system's and
# extension members (PostGIS's spatial_ref_sys, anything registered with
# pg_extension_config_dump), which the extension's CREATE EXTENSION recreates
_USER_TABLES = """
SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def user_tables(conn: Conn) -> list[tuple[str, str, int]]:
    """The application's tables: (schema, name, the planner's row estimate), sorted."""
    return [(str(s), str(n), int(r)) for s, n, r in conn.execute(_USER_TABLES).fetchall()]


_ADVISORY_HOLDER = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), '(none)'), a.usename, a.client_addr,
       a.state, extract(epoch FROM now() - coalesce(
           CASE WHEN a.state = 'idle' THEN a.state_change END, a.xact_start, a.backend_start))
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND CASE WHEN %(schema)s::text IS NULL
  THEN l.objsubid = 1 AND l.classid = (%(key)s::bigint >> 32)::oid
       AND l.objid = (%(key)s::bigint & 4294967295)::oid
  ELSE l.objsubid = 2 AND l.classid = %(key)s::bigint::oid
       AND l.objid = (hashtext(%(schema)s)::bigint & 4294967295)::oid END
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
LIMIT 1
"""


def advisory_holder(conn: Conn, key: int, schema: str | None = None) -> str:
    """Who holds session advisory lock ``key``: 'pid 123 (application ..., user ..., from
    ...) for 12s', or a note that it is gone."""
    row = conn.execute(_ADVISORY_HOLDER, {"key": key, "schema": schema}).fetchone()
    if row is None:
        return "a session that is gone or not visible to this user"
    pid, application, user, client, state, seconds = row
    origin = f", from {client}" if client else ""
    return (
        f"pid {pid} (application {application!s}, user {user}{origin}, {state}) "
        f"for {float(seconds or 0):.0f}s"
    )


# sessions that hold, or queue for, a lock that makes an ordinary read wait: an ACCESS
# EXCLUSIVE lock granted, or one requested (a queued ALTER makes every later reader queue)
_EXCLUSIVE_HOLDERS = """
SELECT a.pid, a.usename, coalesce(nullif(a.application_name, ''), '(none)'),
       coalesce(a.state, '?'),
       extract(epoch FROM now() - coalesce(a.xact_start, a.query_start, a.backend_start)),
       left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 80),
       l.relation::regclass::text, l.granted,
       (SELECT array_agg(b) FROM unnest(pg_blocking_pids(a.pid)) AS b)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND a.pid <> pg_backend_pid()
ORDER BY l.granted DESC, 5 DESC
LIMIT 5
"""


def describe_lock_holders(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    """'pid 42 (user app, application psql, idle in transaction for 12s, holding public.users):
    LOCK TABLE users; pid 43 (...waiting for public.users behind pid 42)'."""
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.execute("ROLLBACK")
        rows = conn.execute(_EXCLUSIVE_HOLDERS).fetchall()
    except psycopg.Error:
        return "a session that could not be named"
    if not rows:
        return "a session that finished before it could be named"
    parts = []
    for pid, user, app, state, age, query, relation, granted, behind in rows:
        how = f"holding {relation}" if granted else f"waiting for {relation}"
        if not granted and behind:
            how += " behind pid " + ", ".join(str(b) for b in list(behind))  # type: ignore[call-overload]
        parts.append(
            f"pid {pid} (user {user}, application {app}, {state} for "
            f"{float(str(age or 0)):.0f}s, {how}): {str(query).rstrip('; ')}"
        )
    return "; ".join(parts)


def blocked_by(conn: psycopg.Connection[tuple[object, ...]] | None) -> str:
    """What a lock timeout (LockNotAvailable) says: who was in the way and what to do."""
    who = describe_lock_holders(conn) if conn is not None else "another session"
    return f"blocked by {who}; retry when it ends, or end it (SELECT pg_terminate_backend(pid))"


# sessions holding or awaiting a lock on the tables ``oids`` that stand in a migration's
# way: idle in a transaction, older than ``max_age``, or another role's (state hidden)
_LOCK_HOLDERS_OF = """
SELECT a.pid, a.usename, coalesce(nullif(a.application_name, ''), '(none)'),
       coalesce(a.state, 'hidden'),
       extract(epoch FROM now() - coalesce(a.xact_start, a.query_start, a.backend_start)),
       a.query_start, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120),
       array_agg(DISTINCT l.relation::regclass::text ORDER BY l.relation::regclass::text),
       bool_or(NOT l.granted),
       bool_or(l.mode NOT IN ('AccessShareLock', 'RowShareLock', 'RowExclusiveLock'))
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.relation = ANY(%(oids)s)
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND a.pid <> pg_backend_pid()
  AND a.backend_type IS DISTINCT FROM 'autovacuum worker'  -- it yields to a lock request
  AND (a.state LIKE 'idle in transaction%%'
       OR now() - coalesce(a.xact_start, a.query_start) > make_interval(secs => %(max_age)s)
       OR a.state IS NULL)  -- another role's session, without pg_read_all_stats
GROUP BY a.pid, a.usename, a.application_name, a.state, a.xact_start, a.query_start,
         a.backend_start, a.query
ORDER BY 5 DESC NULLS LAST
"""


def lock_holders_of(conn: Conn, oids: list[int], max_age: float) -> list[tuple[Any, ...]]:
    """Rows (pid, user, application, state, age_s, query_start, query, tables, waiting,
    strong) of the sessions in the way of a lock on the tables ``oids``, oldest first."""
    return conn.execute(_LOCK_HOLDERS_OF, {"oids": oids, "max_age": max_age}).fetchall()


_LOCK_WAITER = """
SELECT l.pid, pg_blocking_pids(l.pid)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted AND a.application_name = %s
  AND l.waitstart < now() - make_interval(secs => %s)
LIMIT 1
"""


def lock_waiter(conn: Conn, application: str, longer_than: float) -> tuple[int, list[int]] | None:
    """A session of ``application`` waiting on a lock for over ``longer_than`` seconds:
    (its pid, the pids in its way), or None."""
    row = conn.execute(_LOCK_WAITER, (application, longer_than)).fetchone()
    return None if row is None else (int(row[0]), list(row[1] or []))
