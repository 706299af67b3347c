"""The migration verbs, one small function each: status, migrate, resolve, new."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from predeploy import audit
from predeploy.config.dburl import DatabaseUrl
from predeploy.config.settings import Settings
from predeploy.errors import ConfigError, MigrationError
from predeploy.migrate import discovery as migrations
from predeploy.migrate import executor as runner
from predeploy.migrate import history
from predeploy.migrate import lint as lint_mod
from predeploy.migrate.discovery import Migration
from predeploy.migrate.lock import migrate_session
from predeploy.migrate.status import Entry, Status, compare
from predeploy.postgres.sessions import Conn, connect, target_url

__all__ = [
    "MigrateResult",
    "lint",
    "lint_migrations",
    "migrate",
    "new",
    "recent_runs",
    "refuse_blocked",
    "resolve",
    "status",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class MigrateResult:
    """What a migrate run found and did."""

    before: Status
    applied: tuple[runner.Applied, ...]


def status(settings: Settings) -> Status:
    """Compare the migrations on disk with the history table (read-only)."""
    found = migrations.discover(settings.migrations_dir)
    url, variable = target_url(settings, direct=True)
    with connect(url, timeout=settings.connect_timeout, variable=variable) as conn:
        rows = history.read(conn, settings.migrations_table)
    return compare(found, rows)


def lint(settings: Settings, *, every: bool = False) -> lint_mod.LintReport:
    """Lint the pending migrations (every migration with ``every``) against the live sizes."""
    found = migrations.discover(settings.migrations_dir)
    url, variable = target_url(settings, direct=True)
    with connect(url, timeout=settings.connect_timeout, variable=variable) as conn:
        chosen = (
            found
            if every
            else compare(found, history.read(conn, settings.migrations_table)).pending
        )
        return lint_migrations(settings, conn, chosen)


def lint_migrations(settings: Settings, conn: Conn, chosen: list[Migration]) -> lint_mod.LintReport:
    """Lint ``chosen`` with the sizes of their tables on ``conn``'s database."""
    version = conn.execute("SELECT current_setting('server_version')").fetchone()
    return lint_mod.lint(
        chosen,
        conn,
        large_rows=settings.lint_large_table_rows,
        server_version=str(version[0]).split()[0] if version else None,
    )


def recent_runs(settings: Settings, limit: int = 5) -> list[dict[str, Any]]:
    """The newest rows of the audit table (migrate, rollback, restore runs)."""
    url, variable = target_url(settings, direct=True)
    with connect(url, timeout=settings.connect_timeout, variable=variable) as conn:
        return audit.last_runs(conn, settings.audit_table, limit)


def migrate(
    settings: Settings,
    on_applied: Callable[[runner.Applied], None] | None = None,
    session: Conn | None = None,
    found: list[Migration] | None = None,
) -> MigrateResult:
    """Apply every pending migration, one run at a time, each with its history row.

    ``session`` is a connection that already holds the migrate lock (the workflow
    holds it from before its backup to the end); without one, one is opened here.
    """
    found = migrations.discover(settings.migrations_dir) if found is None else found
    if session is not None:
        history.ensure_table(session, settings.migrations_table)
        return _apply_pending(settings, session, found, on_applied)
    with _history_session(settings, *target_url(settings, direct=True)) as conn:
        return _apply_pending(settings, conn, found, on_applied)


def _apply_pending(
    settings: Settings,
    conn: Conn,
    found: list[Migration],
    on_applied: Callable[[runner.Applied], None] | None,
) -> MigrateResult:
    options = runner.RunOptions(
        table=settings.migrations_table,
        lock_timeout=settings.lock_timeout,
        statement_timeout=settings.statement_timeout,
        lock_retries=settings.lock_retries,
    )
    before = compare(found, history.read(conn, settings.migrations_table))
    refuse_blocked(before, settings)
    runner.configure_session(conn, options)
    applied = []
    for migration in before.pending:
        with structlog.contextvars.bound_contextvars(migration=migration.name):
            applied.append(runner.apply(conn, migration, options))
        if on_applied is not None:
            on_applied(applied[-1])
    log.info("migrate_done", applied=len(applied), pending_before=len(before.pending))
    return MigrateResult(
        before=before,
        applied=tuple(applied),
    )


def resolve(settings: Settings, *, applied: str | None, rolled_back: str | None) -> str:
    """Prisma's `migrate resolve`: mark a failed migration rolled back, or one applied."""
    if (applied is None) == (rolled_back is None):
        raise ConfigError("give exactly one of --applied NAME or --rolled-back NAME")
    name = applied or rolled_back or ""
    found = migrations.discover(settings.migrations_dir)
    table = settings.migrations_table
    with _history_session(settings, *target_url(settings, direct=True)) as conn:
        entry = next(
            (e for e in compare(found, history.read(conn, table)).entries if e.name == name), None
        )
        with conn.transaction():
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


def new(settings: Settings, name: str) -> Migration:
    """Create a new migration folder with migration.sql and down.sql."""
    migration = migrations.create(settings.migrations_dir, name)
    log.info("migration_created", migration=migration.name, folder=str(migration.folder))
    return migration


@contextmanager
def _history_session(settings: Settings, url: DatabaseUrl, variable: str) -> Iterator[Conn]:
    """The migration connection, holding the migrate lock, with the history table in place."""
    with migrate_session(settings, url, variable, "migrate") as conn:
        history.ensure_table(conn, settings.migrations_table)
        yield conn


def _resolvable(entry: Entry | None, name: str) -> Migration:
    if entry is None or entry.migration is None:
        raise ConfigError(f"migration {name} is not in the migrations folder: check the name")
    if entry.state in ("applied", "edited"):
        raise ConfigError(f"migration {name} is already applied: nothing to resolve")
    return entry.migration


def refuse_blocked(before: Status, settings: Settings) -> None:
    """MigrationError while a migration is failed, or (outside dev) an applied one edited."""
    failed = before.having("failed")
    if failed:
        names = ", ".join(e.name for e in failed)
        first = failed[0].name
        raise MigrationError(
            f"failed migration(s) block migrate: {names}. Check what it changed, then "
            f"`invoke resolve --rolled-back {first}` to run it again, or "
            f"`invoke resolve --applied {first}` if you completed it by hand"
        )
    for entry in before.having("edited"):
        assert entry.migration is not None and entry.row is not None  # noqa: S101
        detail = (
            f"{entry.migration.sql_path} changed after it was applied (file sha256 "
            f"{entry.migration.checksum[:12]}…, recorded {entry.row.checksum[:12]}…)"
        )
        if settings.env != "dev":
            raise MigrationError(
                f"{detail}: restore the applied version (git checkout) and put the change "
                f"in a new migration (invoke new NAME)"
            )
        log.warning("migration_edited", migration=entry.name, detail=detail)
    for entry in before.having("missing"):
        log.warning(
            "migration_missing_on_disk",
            migration=entry.name,
            detail="recorded in the database but no folder on disk",
        )
