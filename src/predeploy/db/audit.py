"""The audit trail: one row per migrate, deploy, rollback or restore run, in our own table.

Separate from the history table (which stays Prisma's): who ran what, where, from
which revision, what it applied and how long it took, which backup guarded it. The row is
a sink like a log line: every text in it goes through the run's scrubber (a failed
migration's detail may quote a password). What a row says (its outcome) is the run
lifecycle's to decide (``commands.run``): this module only keeps the table.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import structlog
from psycopg import sql

from predeploy import __version__
from predeploy._util.operator import operator
from predeploy._util.redact import Scrubber
from predeploy.db.connect import Conn
from predeploy.db.failures import message_of
from predeploy.db.table import Table
from predeploy.programs import git

__all__ = ["Run", "ensure_table", "last_runs", "record"]

log = structlog.get_logger(__name__)

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    id            bigserial PRIMARY KEY,
    run_id        text NOT NULL,
    command       text NOT NULL,
    env           text NOT NULL,
    operator      text NOT NULL,
    host          text NOT NULL,
    git_revision  text,
    tool_version  text NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    outcome       text NOT NULL,
    migrations    jsonb NOT NULL DEFAULT '[]',
    backup_path   text,
    backup_sha256 text,
    detail        text,
    health        jsonb
)
"""
# added after the first release: tables made by it get the column on their next run
_ADD_HEALTH = "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS health jsonb"


@dataclass
class Run:
    """What one run did, filled in as it goes and recorded at its end."""

    run_id: str
    command: str
    env: str
    root: Path
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    migrations: list[dict[str, Any]] = field(default_factory=list)
    backup_path: str | None = None
    backup_sha256: str | None = None
    health: dict[str, Any] | None = None  # the health checks' result, when the run checked
    scrubber: Scrubber = field(default_factory=Scrubber, repr=False)  # the settings' one
    # (built by the run lifecycle, ``commands.run.Lifecycle.start``)


def ensure_table(conn: Conn, table: Table) -> None:
    """The audit table, created (or given its newer columns) when needed; psycopg.Error
    when this user may not."""
    row = conn.execute(
        "SELECT to_regclass(%(t)s) IS NOT NULL, EXISTS (SELECT 1 FROM pg_attribute"
        " WHERE attrelid = to_regclass(%(t)s) AND attname = 'health' AND NOT attisdropped)",
        {"t": table.regclass},
    ).fetchone()
    exists, has_health = row if row is not None else (False, False)
    if not exists:
        conn.execute(sql.SQL(_DDL).format(table=table.ident))
    elif not has_health:
        conn.execute(sql.SQL(_ADD_HEALTH).format(table=table.ident))


def record(conn: Conn, table: Table, run: Run, outcome: str, detail: str | None) -> None:
    """Write the run's row; a failure to write it is logged, never raised over the run's own."""
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.execute("ROLLBACK")
        ensure_table(conn, table)
        _insert(conn, table, run, outcome, detail)
    except psycopg.Error as exc:
        log.warning("audit_not_recorded", detail=message_of(exc))


def _insert(conn: Conn, table: Table, run: Run, outcome: str, detail: str | None) -> None:
    mask = run.scrubber.value
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (run_id, command, env, operator, host, git_revision,"
            " tool_version, started_at, finished_at, outcome, migrations, backup_path,"
            " backup_sha256, detail, health) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now(),"
            " %s, %s, %s, %s, %s, %s)"
        ).format(table.ident),
        (
            run.run_id,
            run.command,
            run.env,
            operator(),
            socket.gethostname(),
            git.revision(run.root),
            __version__,
            run.started_at,
            mask(outcome),
            json.dumps(mask(run.migrations)),
            mask(run.backup_path),
            run.backup_sha256,
            mask(detail),
            json.dumps(mask(run.health)) if run.health is not None else None,
        ),
    )


def last_runs(conn: Conn, table: Table, limit: int = 5) -> list[dict[str, Any]]:
    """The newest runs, newest first; none when the table does not exist yet."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table.regclass,)).fetchone()
    if not exists or not exists[0]:
        return []
    cur = conn.execute(
        sql.SQL(
            "SELECT command, env, operator, host, git_revision, started_at, finished_at,"
            " outcome, jsonb_array_length(migrations), backup_path FROM {}"
            " ORDER BY id DESC LIMIT %s"
        ).format(table.ident),
        (limit,),
    )
    keys = (
        "command",
        "env",
        "operator",
        "host",
        "git_revision",
        "started_at",
        "finished_at",
        "outcome",
        "migrations",
        "backup_path",
    )
    return [dict(zip(keys, row, strict=True)) for row in cur.fetchall()]
