"""Relations named in migrations, found in the live database: their table, size and rows.

Lint uses the sizes (a finding on a large table is more severe), the blocker scan
the table oids (who holds or waits for a lock on them). A name that does not
exist yet (a table the migration creates) is simply absent from the result. An
index resolves to its table: that is what its locks and its size concern.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from psycopg import errors as pg_errors

from predeploy.db.connect import Conn

__all__ = ["LiveTable", "oids", "resolve", "size_expression"]

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
