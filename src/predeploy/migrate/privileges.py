"""Before a run takes a backup or changes anything: may this user keep its books?

A run that cannot create or write the history table (or our audit table) would fail after
its backup, part-way through its work. This checks, in one query, each privilege the
bookkeeping needs, one by one (``has_table_privilege(t, 'SELECT, INSERT')`` is true when
*any* of them is held): CREATE on the database when the schema is missing, USAGE on the
schema, CREATE on it when a table is missing, each of SELECT/INSERT/UPDATE the command
uses on the history table, INSERT on the audit table and USAGE on its id sequence. The
refusal names the GRANT statements to run, identifiers quoted, for the current user. The
migrations' own SQL is the server's to judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

from predeploy.db.connect import Conn
from predeploy.db.failures import translated
from predeploy.errors import ConfigError
from predeploy.migrate.history import Table

__all__ = ["APPLY", "RESOLVE", "ROLLBACK", "check_bookkeeping", "check_dump"]

APPLY = ("SELECT", "INSERT", "UPDATE")  # migrate: read, insert rows, finish failed ones
ROLLBACK = ("SELECT", "UPDATE")  # rollback: read, stamp rolled_back_at
RESOLVE = ("SELECT", "INSERT", "UPDATE")

# by the catalogue, not to_regclass: that raises "permission denied for schema" without
# USAGE on it, and the missing USAGE is one of the things to name
_CHECK = """
WITH n AS (
    SELECT to_regnamespace(%(schema)s)::oid AS ns
), o AS (
    SELECT ns,
           (SELECT oid FROM pg_class WHERE relnamespace = ns AND relname = %(history)s) AS h,
           (SELECT oid FROM pg_class WHERE relnamespace = ns AND relname = %(audit)s) AS a
    FROM n
), s AS (
    SELECT o.*,
           (SELECT d.objid FROM pg_depend d JOIN pg_class q ON q.oid = d.objid
            WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
              AND d.refobjid = a AND d.deptype IN ('a', 'i') AND q.relkind = 'S'
            LIMIT 1) AS seq
    FROM o
)
SELECT current_user, current_database(),
       has_database_privilege(current_database(), 'CREATE'),
       ns IS NOT NULL,
       ns IS NOT NULL AND has_schema_privilege(ns, 'USAGE'),
       ns IS NOT NULL AND has_schema_privilege(ns, 'CREATE'),
       h IS NOT NULL,
       h IS NOT NULL AND has_table_privilege(h, 'SELECT'),
       h IS NOT NULL AND has_table_privilege(h, 'INSERT'),
       h IS NOT NULL AND has_table_privilege(h, 'UPDATE'),
       a IS NOT NULL,
       a IS NOT NULL AND has_table_privilege(a, 'INSERT'),
       (SELECT ARRAY[n.nspname::text, c.relname::text] FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = seq),
       seq IS NULL OR has_sequence_privilege(seq, 'USAGE')
FROM s
"""


@dataclass(frozen=True)
class _Held:
    """What the server said this user may do, privilege by privilege."""

    user: str
    database: str
    db_create: bool
    has_schema: bool
    schema_usage: bool
    schema_create: bool
    has_history: bool
    history: dict[str, bool]
    has_audit: bool
    audit_insert: bool
    sequence: Table | None
    sequence_usage: bool


def check_bookkeeping(
    conn: Conn,
    history: Table,
    audit: Table,
    *,
    needs: Sequence[str] = APPLY,
    audited: bool = True,
    then: str = "nothing was done (no backup taken)",
) -> None:
    """ConfigError (exit 2) naming each GRANT that is missing, before anything is done.

    ``needs``: the privileges the command uses on the history table (none: it is not
    touched); ``audited``: the command writes an audit row.
    """
    held = _read(conn, history, audit)
    grants = _grants(conn, held, history, audit, needs=needs, audited=audited)
    if grants:
        raise ConfigError(
            f"user {held.user} lacks privileges this run needs to keep its books: have an "
            f"admin run {'; '.join(grants)} (or run as a role that has them); {then}"
        )


def _read(conn: Conn, history: Table, audit: Table) -> _Held:
    with translated(conn, "checking this user's privileges"):
        row = conn.execute(
            _CHECK,
            {
                "schema": sql.Identifier(history.schema).as_string(conn),
                "history": history.name,
                "audit": audit.name,
            },
        ).fetchone()
    assert row is not None  # noqa: S101 (one row from a CTE of one row)
    user, database, db_create, has_schema, usage, create, has_history = row[:7]
    select, insert, update, has_audit, audit_insert, sequence, sequence_usage = row[7:]
    return _Held(
        user,
        database,
        db_create,
        has_schema,
        usage,
        create,
        has_history,
        {"SELECT": select, "INSERT": insert, "UPDATE": update},
        has_audit,
        audit_insert,
        Table(*sequence) if sequence else None,
        sequence_usage,
    )


def _grants(
    conn: Conn, held: _Held, history: Table, audit: Table, *, needs: Sequence[str], audited: bool
) -> list[str]:
    """The GRANT statements that give ``held.user`` what is missing, in the order to run."""
    who = sql.Identifier(held.user).as_string(conn)
    schema = sql.Identifier(history.schema).as_string(conn)
    to_create = [t for t, exists, used in _tables(held, history, audit, needs, audited)
                 if used and not exists]  # fmt: skip
    grants: list[str] = []
    if not held.has_schema:
        if not held.db_create:
            database = sql.Identifier(held.database).as_string(conn)
            grants.append(
                f"GRANT CREATE ON DATABASE {database} TO {who} (schema {schema} does not exist; "
                f"or create it: CREATE SCHEMA {schema} AUTHORIZATION {who})"
            )
        return grants  # the schema it creates is its own: everything in it is allowed
    on_schema = [p for p, ok in (("USAGE", held.schema_usage), ("CREATE", held.schema_create))
                 if not ok and (p == "USAGE" or to_create)]  # fmt: skip
    if on_schema:
        made = " and ".join(t.regclass for t in to_create)
        why = f" (to create {made})" if "CREATE" in on_schema else ""
        grants.append(f"GRANT {', '.join(on_schema)} ON SCHEMA {schema} TO {who}{why}")
    missing = [p for p in needs if held.has_history and not held.history[p]]
    if missing:
        grants.append(f"GRANT {', '.join(missing)} ON TABLE {history.regclass} TO {who}")
    if audited and held.has_audit and not held.audit_insert:
        grants.append(f"GRANT INSERT ON TABLE {audit.regclass} TO {who}")
    if audited and held.sequence is not None and not held.sequence_usage:
        grants.append(f"GRANT USAGE ON SEQUENCE {held.sequence.regclass} TO {who}")
    return grants


def _tables(
    held: _Held, history: Table, audit: Table, needs: Sequence[str], audited: bool
) -> list[tuple[Table, bool, bool]]:
    """(table, exists, used by this command) for the history and audit tables."""
    return [(history, held.has_history, bool(needs)), (audit, held.has_audit, audited)]


# what pg_dump reads that this user may not: tables and sequences (their rows, their
# values), schemas (to look in), tables whose row-level security would hide rows (pg_dump
# refuses those); extension members are the extension's business
_DUMP = """
SELECT * FROM (
    SELECT n.nspname, c.relname, c.relkind = 'S' AS sequence,
           NOT has_schema_privilege(n.oid, 'USAGE') AS no_usage,
           NOT CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT')
                    ELSE has_table_privilege(c.oid, 'SELECT') END AS no_select,
           c.relrowsecurity AND NOT r.bypass AND (c.relforcerowsecurity OR NOT r.owner) AS rls
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL (
        SELECT rolsuper OR rolbypassrls AS bypass, pg_has_role(c.relowner, 'USAGE') AS owner
        FROM pg_roles WHERE rolname = current_user
    ) r
    WHERE c.relkind IN ('r', 'S')
      AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
) t
WHERE no_usage OR no_select OR rls
ORDER BY 1, 2
"""


def check_dump(conn: Conn) -> None:
    """ConfigError (exit 2) before the backup when pg_dump could not read every table and
    sequence: which, and the GRANTs (or ALTER ROLE) that let it."""
    with translated(conn, "checking what the backup can read"):
        rows = conn.execute(_DUMP).fetchall()
    if not rows:
        return
    user = conn.info.user
    who = sql.Identifier(user).as_string(conn)
    unread = [Table(schema, name).regclass for schema, name, *_ in rows]
    grants: list[str] = []
    for schema in sorted({row[0] for row in rows if row[3] or row[4]}):
        q = sql.Identifier(schema).as_string(conn)
        mine = [row for row in rows if row[0] == schema]
        grants += [f"GRANT USAGE ON SCHEMA {q} TO {who}"] if any(r[3] for r in mine) else []
        for kind, label in ((False, "TABLES"), (True, "SEQUENCES")):
            if any(r[2] == kind and (r[3] or r[4]) for r in mine):
                grants.append(f"GRANT SELECT ON ALL {label} IN SCHEMA {q} TO {who}")
    if any(row[5] for row in rows):
        grants.append(f"ALTER ROLE {who} BYPASSRLS (row-level security would hide rows)")
    listed = ", ".join(unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5 else "")
    raise ConfigError(
        f"user {user} cannot back up the whole database: pg_dump could not read {listed}; "
        f"have an admin run {'; '.join(grants)} (on PostgreSQL 14+, GRANT pg_read_all_data "
        f"TO {who} also does), or use a role that can; nothing was done (no backup taken)"
    )
