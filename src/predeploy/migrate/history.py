"""The history table: Prisma's `_prisma_migrations`, column for column.

Rows are written the way Prisma writes them, so that `prisma migrate status`
agrees with predeploy in both directions. A row is never deleted.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime

from psycopg import sql
from psycopg.rows import class_row

from predeploy.migrate.discovery import Migration
from predeploy.postgres.sessions import Conn

__all__ = [
    "HistoryRow",
    "ensure_table",
    "finish",
    "insert_applied",
    "insert_started",
    "latest_applied",
    "mark_applied",
    "mark_rolled_back",
    "read",
    "record_failure",
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


def ensure_table(conn: Conn, table: str) -> None:
    """Create the history table in the connection's schema if it is not there."""
    conn.execute(sql.SQL(_DDL).format(table=sql.Identifier(table)))


def read(conn: Conn, table: str) -> list[HistoryRow]:
    """Every row, oldest first; no table means no history yet."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_quoted(table),)).fetchone()
    if not exists or not exists[0]:
        return []
    with conn.cursor(row_factory=class_row(HistoryRow)) as cur:
        cur.execute(
            sql.SQL(
                "SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at,"
                " started_at, applied_steps_count FROM {} ORDER BY started_at, migration_name"
            ).format(sql.Identifier(table))
        )
        return cur.fetchall()


def insert_applied(conn: Conn, table: str, migration: Migration, started_at: datetime) -> None:
    """The row of a migration applied in the caller's transaction, as Prisma leaves it."""
    conn.execute(
        _insert_applied_sql(table),
        (str(uuid.uuid4()), migration.checksum, migration.name, started_at),
    )


@functools.cache
def _insert_applied_sql(table: str) -> sql.Composed:
    # composed once per table: this runs once per migration, on the hot path
    return sql.SQL(
        "INSERT INTO {} (id, checksum, finished_at, migration_name, logs, started_at,"
        " applied_steps_count) VALUES (%s, %s, clock_timestamp(), %s, NULL, %s, 1)"
    ).format(sql.Identifier(table))


def insert_started(conn: Conn, table: str, migration: Migration) -> str:
    """A row with finished_at null, committed before a non-transactional script runs."""
    row_id = str(uuid.uuid4())
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (id, checksum, migration_name, started_at, applied_steps_count)"
            " VALUES (%s, %s, %s, clock_timestamp(), 0)"
        ).format(sql.Identifier(table)),
        (row_id, migration.checksum, migration.name),
    )
    return row_id


def finish(conn: Conn, table: str, row_id: str, steps: int = 1) -> None:
    conn.execute(
        sql.SQL(
            "UPDATE {} SET finished_at = clock_timestamp(), applied_steps_count = %s WHERE id = %s"
        ).format(sql.Identifier(table)),
        (steps, row_id),
    )


def record_failure(conn: Conn, table: str, row_id: str, logs: str, steps: int) -> None:
    """Keep the error on a failed row: finished_at stays null, so later runs stop here."""
    conn.execute(
        sql.SQL("UPDATE {} SET logs = %s, applied_steps_count = %s WHERE id = %s").format(
            sql.Identifier(table)
        ),
        (logs, steps, row_id),
    )


def mark_rolled_back(conn: Conn, table: str, name: str) -> int:
    """Prisma's `resolve --rolled-back`: stamp the failed rows of ``name``; returns how many."""
    cur = conn.execute(
        sql.SQL(
            "UPDATE {} SET rolled_back_at = clock_timestamp()"
            " WHERE migration_name = %s AND finished_at IS NULL AND rolled_back_at IS NULL"
        ).format(sql.Identifier(table)),
        (name,),
    )
    return cur.rowcount


def mark_applied(conn: Conn, table: str, migration: Migration) -> None:
    """Prisma's `resolve --applied`: a finished row with no steps run by us."""
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (id, checksum, finished_at, migration_name, logs, started_at,"
            " applied_steps_count) VALUES (%s, %s, clock_timestamp(), %s, NULL,"
            " clock_timestamp(), 0)"
        ).format(sql.Identifier(table)),
        (str(uuid.uuid4()), migration.checksum, migration.name),
    )


def _quoted(table: str) -> str:
    return '"' + table.replace('"', '""') + '"'
