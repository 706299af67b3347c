"""The migration verbs, one small function each: status, lint, resolve, new (migrate is
predeploy.commands.migrate)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from psycopg import errors as pg_errors
from psycopg import sql

from predeploy._util import cache, lazy
from predeploy.config.settings import Settings
from predeploy.db import audit
from predeploy.db.connect import Conn, catalog_session, migration_limits
from predeploy.db.failures import message_of, translated
from predeploy.db.locks import migrate_session
from predeploy.errors import ConfigError, DatabaseUnreachable, MigrationError, PredeployError
from predeploy.migrate import discovery as migrations
from predeploy.migrate import history
from predeploy.migrate.discovery import Migration
from predeploy.migrate.history import Table
from predeploy.migrate.phaselint import apply_phases
from predeploy.migrate.privileges import RESOLVE, check_bookkeeping
from predeploy.migrate.status import Entry, Status, compare

if TYPE_CHECKING:
    from predeploy.migrate import executor
    from predeploy.migrate import lint as lint_mod
else:  # status reads; it needs neither the executor nor squawk
    executor = lazy.module("predeploy.migrate.executor")
    lint_mod = lazy.module("predeploy.migrate.lint")

__all__ = [
    "lint",
    "lint_migrations",
    "new",
    "read_history",
    "recent_runs",
    "refuse_standby",
    "resolve",
    "run_options",
    "status",
    "status_and_runs",
]

log = structlog.get_logger(__name__)


def read_history(conn: Conn, table: Table) -> list[history.HistoryRow]:
    """The history rows; a missing privilege (exit 2) or a lock (exit 3) says what to do."""
    doing = f"reading the migration history ({table})"
    with translated(conn, doing):
        try:
            return history.read(conn, table)
        except pg_errors.InsufficientPrivilege as exc:  # on the schema, or on the table
            said = message_of(exc)
            schema = sql.Identifier(table.schema).as_string(conn)
            on = (
                f"USAGE ON SCHEMA {schema}"
                if said.startswith("permission denied for schema")
                else f"SELECT ON TABLE {table.regclass}"
            )
            raise ConfigError(f"{doing}: {said}: GRANT {on} TO {_role(conn)}") from None


def status(settings: Settings) -> Status:
    """Compare the migrations on disk with the history table (read-only)."""
    found = migrations.discover(settings.migrations_dir)
    table, _ = history.tables_for(settings)
    with catalog_session(settings, purpose="status") as conn:
        rows = read_history(conn, table)
    return compare(found, rows)


def status_and_runs(settings: Settings, limit: int = 5) -> tuple[Status, list[dict[str, Any]]]:
    """The status and the newest audit rows, read in one session."""
    found = migrations.discover(settings.migrations_dir)
    table, audit_table = history.tables_for(settings)
    with catalog_session(settings, purpose="status") as conn:
        rows = read_history(conn, table)
        runs = _last_runs(conn, audit_table, limit)
    return compare(found, rows), runs


def lint(settings: Settings, *, every: bool = False) -> lint_mod.LintReport:
    """Lint the pending migrations (every migration with ``every``) against the live sizes."""
    found = migrations.discover(settings.migrations_dir)
    table, _ = history.tables_for(settings)
    with catalog_session(settings, purpose="lint") as conn:
        chosen = found if every else compare(found, read_history(conn, table)).pending
        return lint_migrations(settings, conn, chosen)


def lint_migrations(settings: Settings, conn: Conn, chosen: list[Migration]) -> lint_mod.LintReport:
    """Lint ``chosen`` with the sizes of their tables on ``conn``'s database."""
    version = conn.info.parameter_status("server_version")
    with translated(conn, "reading the sizes of the tables to lint"):
        report = lint_mod.lint(
            chosen,
            conn,
            large_rows=settings.lint_large_table_rows,
            server_version=version.split()[0] if version else None,
            cache_dir=cache.folder(settings.root),
        )
    return apply_phases(report, chosen)


def recent_runs(settings: Settings, limit: int = 5) -> list[dict[str, Any]]:
    """The newest rows of the audit table (migrate, rollback, restore runs)."""
    _, table = history.tables_for(settings)
    with catalog_session(settings, purpose="status") as conn:
        return _last_runs(conn, table, limit)


def _last_runs(conn: Conn, table: Table, limit: int) -> list[dict[str, Any]]:
    try:
        with translated(conn, f"reading the audit table ({table})"):
            return audit.last_runs(conn, table, limit)
    except PredeployError as exc:  # the status itself stands without the trail
        log.warning("audit_not_read", detail=exc.message)
        return []


def run_options(settings: Settings) -> executor.RunOptions:
    """The executor's options for this env: history table, migration limits, retries."""
    table, _ = history.tables_for(settings)
    url = settings.migration_url
    return executor.RunOptions(
        table=table,
        limits=migration_limits(settings),
        lock_retries=settings.lock_retries,
        search_path=url.schema if url is not None else None,
    )


def ensure_history(conn: Conn, table: Table) -> None:
    """The history table (and its schema), created when missing."""
    with translated(
        conn,
        f"creating the migration history table {table}",
        error=MigrationError,
        grant=f"GRANT CREATE ON SCHEMA {sql.Identifier(table.schema).as_string(conn)} TO "
        f"{_role(conn)}, or create it first",
    ):
        history.ensure_table(conn, table)


def refuse_standby(conn: Conn) -> None:
    """DatabaseUnreachable when ``conn`` is a read-only standby."""
    row = conn.execute("SELECT pg_is_in_recovery(), current_database()").fetchone()
    if row is not None and row[0]:
        raise DatabaseUnreachable(
            f"{row[1]} is a standby (read-only, in recovery): point the direct URL "
            f"(DIRECT_URL, DIRECT_DATABASE_URL or DATABASE_URL) at the primary"
        )


def resolve(settings: Settings, *, applied: str | None, rolled_back: str | None) -> str:
    """Prisma's `migrate resolve`: mark a failed migration rolled back, or one applied."""
    if (applied is None) == (rolled_back is None):
        raise ConfigError("give exactly one of --applied NAME or --rolled-back NAME")
    name = applied or rolled_back or ""
    found = migrations.discover(settings.migrations_dir)
    table, audit_table = history.tables_for(settings)
    with migrate_session(settings, "resolve") as conn:
        refuse_standby(conn)
        check_bookkeeping(
            conn, table, audit_table, needs=RESOLVE, audited=False, then="nothing was marked"
        )
        ensure_history(conn, table)
        entries = compare(found, read_history(conn, table)).entries
        entry = next((e for e in entries if e.name == name), None)
        grant = f"GRANT INSERT, UPDATE ON TABLE {table.regclass} TO {_role(conn)}"
        with translated(conn, f"marking {name} in {table}", grant=grant), conn.transaction():
            if rolled_back is not None:
                if entry is None or entry.state != "failed":
                    state = entry.state if entry else "unknown"
                    raise ConfigError(
                        f"migration {name} is not failed ({state}): only a failed migration "
                        f"can be marked rolled back"
                    )
                history.mark_rolled_back(conn, table, name)
                outcome = "rolled_back"
            else:
                migration = _resolvable(entry, name)
                history.mark_rolled_back(conn, table, name)
                history.mark_applied(conn, table, migration)
                outcome = "applied"
    log.info("migration_resolved", migration=name, outcome=outcome)
    return outcome


def new(settings: Settings, name: str, *, post_deploy: bool = False) -> Migration:
    """Create a new migration folder with migration.sql and down.sql."""
    migration = migrations.create(settings.migrations_dir, name, post_deploy=post_deploy)
    log.info("migration_created", migration=migration.name, folder=str(migration.folder))
    return migration


def _resolvable(entry: Entry | None, name: str) -> Migration:
    if entry is None or entry.migration is None:
        raise ConfigError(f"migration {name} is not in the migrations folder: check the name")
    if entry.state in ("applied", "edited"):
        raise ConfigError(f"migration {name} is already applied: nothing to resolve")
    return entry.migration


def _role(conn: Conn) -> str:
    """The session's user as a GRANT names it (quoted)."""
    return sql.Identifier(conn.info.user).as_string(conn) if conn.info.user else "this user"
