"""The history table: Prisma's `_prisma_migrations`, column for column.

Rows are written the way Prisma writes them, so that `prisma migrate status`
agrees with predeploy in both directions. A row is never deleted. The table is
always named with its schema (``Table``): a migration that changes the session's
search_path changes nothing about where its row goes.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Cursor, sql
from psycopg import errors as pg_errors
from psycopg.rows import class_row

from predeploy.db.connect import Conn
from predeploy.db.failures import message_of, translated
from predeploy.db.table import Table
from predeploy.errors import ConfigError, MigrationError
from predeploy.migrate.discovery import Migration

__all__ = [
    "HistoryRow",
    "Table",
    "ensure_history",
    "ensure_table",
    "finish",
    "insert_applied",
    "insert_applied_now",
    "insert_started",
    "latest_applied",
    "mark_applied",
    "mark_rolled_back",
    "mark_undone",
    "read",
    "read_history",
    "record_failure",
    "role",
]


_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)
"""


@dataclass(frozen=True)
class HistoryRow:
    """One row of the history table."""

    id: str
    checksum: str
    finished_at: datetime | None
    migration_name: str
    logs: str | None
    rolled_back_at: datetime | None
    started_at: datetime
    applied_steps_count: int

    @property
    def applied(self) -> bool:
        return self.finished_at is not None and self.rolled_back_at is None

    @property
    def failed(self) -> bool:
        return self.finished_at is None and self.rolled_back_at is None


def latest_applied(rows: list[HistoryRow]) -> tuple[str | None, int]:
    """The last applied migration (in migration order) and how many are applied."""
    applied = [r.migration_name for r in rows if r.applied]
    return max(applied, default=None), len(applied)


def ensure_table(conn: Conn, table: Table) -> None:
    """Create the history table (and its schema, as Prisma does) if they are not there.

    Both are looked up first: CREATE ... IF NOT EXISTS checks the CREATE privilege even
    when the object exists, and a user without it must still be able to migrate.
    """
    row = conn.execute(
        "SELECT to_regnamespace(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL",
        (sql.Identifier(table.schema).as_string(conn), table.regclass),
    ).fetchone()
    schema_exists, table_exists = row if row is not None else (False, False)
    if not schema_exists:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)))
    if not table_exists:
        conn.execute(sql.SQL(_DDL).format(table=table.ident))


def read(conn: Conn, table: Table) -> list[HistoryRow]:
    """Every row, oldest first; no table means no history yet."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table.regclass,)).fetchone()
    if not exists or not exists[0]:
        return []
    with conn.cursor(row_factory=class_row(HistoryRow)) as cur:
        cur.execute(
            sql.SQL(
                "SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at,"
                " started_at, applied_steps_count FROM {} ORDER BY started_at, migration_name"
            ).format(table.ident)
        )
        return cur.fetchall()


def insert_applied(conn: Conn, table: Table, migration: Migration, started_at: datetime) -> None:
    """The row of a migration applied in the caller's transaction, as Prisma leaves it."""
    conn.execute(
        _insert_applied_sql(table),
        (str(uuid.uuid4()), migration.checksum, migration.name, started_at),
    )


def insert_applied_now(conn: Conn, table: Table, migration: Migration) -> Cursor[tuple[Any, ...]]:
    """The same row, its started_at the caller's transaction's start (``now()``): for
    migrations sent in one batch, whose client-side start times would all be alike.

    The cursor's one row is how long the migration ran, in seconds (server clock).
    """
    return conn.execute(
        _insert_applied_now_sql(table), (str(uuid.uuid4()), migration.checksum, migration.name)
    )


@functools.cache
def _insert_applied_now_sql(table: Table) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {} (id, checksum, finished_at, migration_name, logs, started_at,"
        " applied_steps_count) VALUES (%s, %s, clock_timestamp(), %s, NULL, now(), 1)"
        " RETURNING extract(epoch FROM finished_at - started_at)::float8"
    ).format(table.ident)


@functools.cache
def _insert_applied_sql(table: Table) -> sql.Composed:
    # composed once per table: this runs once per migration, on the hot path
    return sql.SQL(
        "INSERT INTO {} (id, checksum, finished_at, migration_name, logs, started_at,"
        " applied_steps_count) VALUES (%s, %s, clock_timestamp(), %s, NULL, %s, 1)"
    ).format(table.ident)


def insert_started(conn: Conn, table: Table, migration: Migration) -> str:
    """A row with finished_at null, committed before a non-transactional script runs."""
    row_id = str(uuid.uuid4())
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (id, checksum, migration_name, started_at, applied_steps_count)"
            " VALUES (%s, %s, %s, clock_timestamp(), 0)"
        ).format(table.ident),
        (row_id, migration.checksum, migration.name),
    )
    return row_id


def finish(conn: Conn, table: Table, row_id: str, steps: int = 1) -> None:
    conn.execute(
        sql.SQL(
            "UPDATE {} SET finished_at = clock_timestamp(), applied_steps_count = %s WHERE id = %s"
        ).format(table.ident),
        (steps, row_id),
    )


def record_failure(conn: Conn, table: Table, row_id: str, logs: str, steps: int) -> None:
    """Keep the error on a failed row: finished_at stays null, so later runs stop here."""
    conn.execute(
        sql.SQL("UPDATE {} SET logs = %s, applied_steps_count = %s WHERE id = %s").format(
            table.ident
        ),
        (logs, steps, row_id),
    )


def mark_rolled_back(conn: Conn, table: Table, name: str) -> int:
    """Prisma's `resolve --rolled-back`: stamp the failed rows of ``name``; returns how many."""
    cur = conn.execute(
        sql.SQL(
            "UPDATE {} SET rolled_back_at = clock_timestamp()"
            " WHERE migration_name = %s AND finished_at IS NULL AND rolled_back_at IS NULL"
        ).format(table.ident),
        (name,),
    )
    return cur.rowcount


def mark_applied(conn: Conn, table: Table, migration: Migration) -> None:
    """Prisma's `resolve --applied`: a finished row with no steps run by us."""
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (id, checksum, finished_at, migration_name, logs, started_at,"
            " applied_steps_count) VALUES (%s, %s, clock_timestamp(), %s, NULL,"
            " clock_timestamp(), 0)"
        ).format(table.ident),
        (str(uuid.uuid4()), migration.checksum, migration.name),
    )


def mark_undone(conn: Conn, table: Table, name: str) -> None:
    """Rollback's bookkeeping: the applied rows of ``name`` stamped rolled back (so the
    migration is pending again), in the caller's transaction."""
    conn.execute(
        sql.SQL(
            "UPDATE {} SET rolled_back_at = clock_timestamp() WHERE migration_name = %s"
            " AND finished_at IS NOT NULL AND rolled_back_at IS NULL"
        ).format(table.ident),
        (name,),
    )


def read_history(conn: Conn, table: Table) -> list[HistoryRow]:
    """The history rows; a missing privilege (exit 2) or a lock (exit 3) says what to do."""
    doing = f"reading the migration history ({table})"
    with translated(conn, doing):
        try:
            return read(conn, table)
        except pg_errors.InsufficientPrivilege as exc:  # on the schema, or on the table
            said = message_of(exc)
            schema = sql.Identifier(table.schema).as_string(conn)
            on = (
                f"USAGE ON SCHEMA {schema}"
                if said.startswith("permission denied for schema")
                else f"SELECT ON TABLE {table.regclass}"
            )
            raise ConfigError(f"{doing}: {said}: GRANT {on} TO {role(conn)}") from None


def ensure_history(conn: Conn, table: Table) -> None:
    """The history table (and its schema), created when missing; a missing privilege says
    which GRANT."""
    with translated(
        conn,
        f"creating the migration history table {table}",
        error=MigrationError,
        grant=f"GRANT CREATE ON SCHEMA {sql.Identifier(table.schema).as_string(conn)} TO "
        f"{role(conn)}, or create it first",
    ):
        ensure_table(conn, table)


def role(conn: Conn) -> str:
    """The session's user as a GRANT names it (quoted)."""
    return sql.Identifier(conn.info.user).as_string(conn) if conn.info.user else "this user"
