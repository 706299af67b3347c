"""`invoke rollback`: run the down.sql of the last N applied migrations, newest first.

Each down.sql runs in its own transaction with the history updated in it (the
row marked rolled back, as Prisma's resolve does), so the migration is pending
again afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import structlog
from psycopg import sql

from predeploy import audit
from predeploy.config.settings import Settings
from predeploy.errors import ConfigError, MigrationError
from predeploy.log import current_run_id
from predeploy.migrate import discovery as migrations
from predeploy.migrate import history
from predeploy.migrate.discovery import Migration
from predeploy.migrate.lock import migrate_session
from predeploy.migrate.sqlscript import Script, analyse, position_to_line_column
from predeploy.migrate.status import compare
from predeploy.postgres.sessions import target_url

__all__ = ["RolledBack", "rollback"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RolledBack:
    name: str
    seconds: float


def rollback(
    settings: Settings,
    steps: int,
    *,
    dry_run: bool,
    confirm: Callable[[list[Migration]], None],
    on_done: Callable[[RolledBack], None] | None = None,
) -> list[Migration]:
    """Undo the newest ``steps`` applied migrations; returns them (newest first)."""
    if steps < 1:
        raise ConfigError("--steps must be 1 or more")
    found = migrations.discover(settings.migrations_dir)
    url, variable = target_url(settings, direct=True)
    table = settings.migrations_table
    with migrate_session(settings, url, variable, "rollback") as conn:
        status = compare(found, history.read(conn, table))
        applied = sorted(
            (e.migration for e in status.entries if e.state == "applied" and e.migration),
            key=lambda m: m.name.encode(),
            reverse=True,
        )
        if len(applied) < steps:
            raise ConfigError(f"only {len(applied)} migration(s) are applied: cannot undo {steps}")
        chosen = applied[:steps]
        without = [m.name for m in chosen if not _has_down(m)]
        outside = [m.name for m in chosen if _has_down(m) and not _down_script(m).transactional]
        if outside:
            raise MigrationError(
                f"the down.sql of {', '.join(outside)} cannot run in a transaction (CONCURRENTLY, "
                f"VACUUM, its own BEGIN/COMMIT...): undo it by hand; nothing was undone"
            )
        if without:
            raise MigrationError(
                f"no down.sql (or only comments) for {', '.join(without)}: nothing was undone; "
                f"restore a backup instead (invoke backups, invoke restore)"
            )
        if dry_run:
            return chosen
        confirm(chosen)
        run = audit.Run(
            run_id=current_run_id(), command="rollback", env=settings.env, root=settings.root
        )
        try:
            for migration in chosen:
                started = time.perf_counter()
                _undo(conn, table, migration)
                done = RolledBack(migration.name, time.perf_counter() - started)
                run.migrations.append({"name": done.name, "seconds": round(done.seconds, 4)})
                log.info(
                    "migration_rolled_back", migration=done.name, seconds=round(done.seconds, 4)
                )
                if on_done is not None:
                    on_done(done)
        except MigrationError as exc:
            audit.record(conn, settings.audit_table, run, "failed", str(exc))
            raise
        audit.record(conn, settings.audit_table, run, "rolled back", None)
    return chosen


def _has_down(migration: Migration) -> bool:
    return migration.down_path is not None and bool(_down_script(migration).statements)


def _down_script(migration: Migration) -> Script:
    assert migration.down_path is not None  # noqa: S101 (callers check)
    return analyse(migration.down_path.read_text())


def _undo(conn: psycopg.Connection[tuple[object, ...]], table: str, migration: Migration) -> None:
    assert migration.down_path is not None  # noqa: S101 (checked by _has_down)
    text = migration.down_path.read_text()
    script = analyse(text)
    statement = None
    try:
        with conn.transaction():
            for statement in script.statements:
                conn.execute(statement.text, prepare=False)
            conn.execute(
                sql.SQL(
                    "UPDATE {} SET rolled_back_at = clock_timestamp() WHERE migration_name = %s"
                    " AND finished_at IS NOT NULL AND rolled_back_at IS NULL"
                ).format(sql.Identifier(table)),
                (migration.name,),
            )
    except psycopg.Error as exc:
        where = ""
        if statement is not None:
            line, column = position_to_line_column(
                text, statement.offset + int(exc.diag.statement_position or 1)
            )
            where = f" at line {line}, column {column} of down.sql"
        raise MigrationError(
            f"rollback of {migration.name} failed{where} [{exc.diag.sqlstate}]: "
            f"{(exc.diag.message_primary or str(exc)).strip()}; it was not undone (the ones "
            f"before it in this run were)"
        ) from None
