"""Relations named in migrations, found in the live database: their table, size and rows.

Lint uses the sizes (a finding on a large table is more severe), the blocker scan
the table oids (who holds or waits for a lock on them). A name that does not
exist yet (a table the migration creates) is simply absent from the result. An
index resolves to its table: that is what its locks and its size concern.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from predeploy.postgres.sessions import Conn

__all__ = ["LiveTable", "resolve"]

_RESOLVE = """
SELECT n.name, t.oid, quote_ident(tn.nspname) || '.' || quote_ident(t.relname),
       CASE WHEN t.reltuples >= 0 THEN t.reltuples::bigint ELSE coalesce(s.n_live_tup, 0) END,
       pg_total_relation_size(t.oid)
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

    def as_dict(self) -> dict[str, object]:
        return {"table": self.table, "rows": self.rows, "bytes": self.bytes}


def resolve(conn: Conn, names: Iterable[str]) -> dict[str, LiveTable]:
    """The existing tables behind ``names`` ("schema.name" or "name"), by name."""
    unique = list(dict.fromkeys(names))
    if not unique:
        return {}
    split = [name.split(".", 1) if "." in name else ["", name] for name in unique]
    rows = conn.execute(
        _RESOLVE,
        {
            "schemas": [schema for schema, _ in split],
            "names": [relname for _, relname in split],
            "shown": unique,
        },
    ).fetchall()
    return {
        str(name): LiveTable(str(name), int(oid), str(table), int(live), int(size))
        for name, oid, table, live, size in rows
    }
