"""Before a run takes a backup or applies anything: may this user keep its books?

A run that cannot create or write the history table (or our audit table) would fail after
its backup, part-way through its work. This checks, in one query, what the bookkeeping
needs: CREATE on the database when the schema is missing, CREATE on the schema when a
table is missing, SELECT/INSERT/UPDATE on the history table and INSERT on the audit table
when they exist. The migrations' own SQL is the server's to judge.
"""

from __future__ import annotations

from psycopg import sql

from predeploy.errors import ConfigError
from predeploy.migrate.history import Table
from predeploy.postgres.failures import translated
from predeploy.postgres.sessions import Conn

__all__ = ["check_bookkeeping"]

_CHECK = """
SELECT current_user,
       to_regnamespace(%(quoted)s) IS NOT NULL,
       has_database_privilege(current_database(), 'CREATE'),
       to_regnamespace(%(quoted)s) IS NULL OR has_schema_privilege(%(schema)s, 'CREATE'),
       to_regnamespace(%(quoted)s) IS NULL OR has_schema_privilege(%(schema)s, 'USAGE'),
       to_regclass(%(history)s) IS NOT NULL,
       to_regclass(%(history)s) IS NULL
         OR has_table_privilege(%(history)s, 'SELECT, INSERT, UPDATE'),
       to_regclass(%(audit)s) IS NOT NULL,
       to_regclass(%(audit)s) IS NULL OR has_table_privilege(%(audit)s, 'SELECT, INSERT')
"""


def check_bookkeeping(conn: Conn, history: Table, audit: Table) -> None:
    """ConfigError (exit 2) naming the GRANT that is missing, before anything is done."""
    schema = sql.Identifier(history.schema).as_string(conn)
    with translated(conn, "checking this user's privileges"):
        row = conn.execute(
            _CHECK,
            {
                "quoted": schema,
                "schema": history.schema,
                "history": history.regclass,
                "audit": audit.regclass,
            },
        ).fetchone()
    assert row is not None  # noqa: S101 (a SELECT without FROM returns one row)
    user, has_schema, db_create, schema_create, schema_usage = row[:5]
    has_history, history_rw, has_audit, audit_rw = row[5:]
    who = sql.Identifier(user).as_string(conn)
    missing: list[str] = []
    if not has_schema and not db_create:
        missing.append(
            f"GRANT CREATE ON DATABASE {conn.info.dbname} TO {who} (schema "
            f"{history.schema} does not exist; or create it first)"
        )
    if has_schema and not schema_usage:
        missing.append(f"GRANT USAGE ON SCHEMA {schema} TO {who}")
    if has_schema and not schema_create and not (has_history and has_audit):
        table = history if not has_history else audit
        missing.append(f"GRANT CREATE ON SCHEMA {schema} TO {who} (to create {table})")
    if has_history and not history_rw:
        missing.append(f"GRANT SELECT, INSERT, UPDATE ON {history} TO {who}")
    if has_audit and not audit_rw:
        missing.append(f"GRANT SELECT, INSERT ON {audit} TO {who}")
    if missing:
        raise ConfigError(
            f"user {user} cannot keep the migration history: {'; '.join(missing)}; "
            f"nothing was done (no backup taken)"
        )
