"""`predeploy rollback`: run the down.sql of named (or the last N applied) migrations.

Migrations are undone newest-applied first (by the history's finished_at, not by name:
an out-of-order merge applies an older name later). Each down.sql runs through the one
executor in its own transaction, which also marks the history row rolled back (as
Prisma's resolve does), so the migration is pending again afterwards; a down.sql that
cannot run in a transaction (DROP INDEX CONCURRENTLY) runs statement by statement, and
the row is marked once all of them ran.

It refuses, before undoing anything, when a migration it would undo has an edited or
missing folder (it never undoes another one instead), when a down.sql is missing or holds
only comments, and when migrations applied after the named ones would be left on top of
the undone ones.

The policy follows the database (``predeploy.db.protection``): under a protected one (the
env's, or one the database remembers) a verified backup is taken first, as migrate does
(``--no-backup`` only with PREDEPLOY_ALLOW_NO_BACKUP=1), and a runbook names it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from predeploy.config.parts import BackupSettings
from predeploy.config.policy import Policy
from predeploy.config.settings import Settings
from predeploy.db import audit, protection
from predeploy.db import target as db_target
from predeploy.db.connect import Conn, refuse_standby
from predeploy.db.failures import translated
from predeploy.db.locks import migrate_session
from predeploy.errors import (
    ConfigError,
    MigrationError,
    PredeployError,
    Terminated,
    interrupted,
)
from predeploy.migrate import discovery as migrations
from predeploy.migrate import executor, history
from predeploy.migrate.discovery import POST_DEPLOY, Migration
from predeploy.migrate.outcome import MigrationFailed
from predeploy.migrate.privileges import ROLLBACK, check_bookkeeping
from predeploy.migrate.sqlscript import Script
from predeploy.migrate.status import Entry, compare

if TYPE_CHECKING:
    from predeploy.backup.dump import BackupResult
    from predeploy.backup.progress import ProgressFn
    from predeploy.commands.runbook import Runbook, UndoFailed

__all__ = ["Chosen", "Undone", "rollback"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Chosen:
    """A migration to undo and its down.sql, parsed."""

    migration: Migration
    down: Script


@dataclass(frozen=True)
class Undone:
    """What a rollback undid (or would undo), the backup it took first and its runbook;
    a rollback whose down.sql failed: the error, and ``undone`` the migrations it undid
    before it (all of ``chosen`` when it went well)."""

    chosen: list[Chosen]
    policy: Policy
    backup: BackupResult | None = None
    runbook: Runbook | None = None
    error: MigrationError | None = None
    undone: tuple[str, ...] | None = None

    def undone_names(self) -> list[str]:
        if self.undone is not None:
            return list(self.undone)
        return [c.migration.name for c in self.chosen]


@dataclass(frozen=True)
class _Asked:
    no_backup: bool


def rollback(
    settings: Settings,
    *,
    steps: int | None = None,
    names: list[str] | None = None,
    dry_run: bool,
    confirm: Callable[[list[Chosen], str, Policy], None],
    on_done: Callable[[executor.Applied], None] | None = None,
    run_id: str = "",
    no_backup: bool = False,
    progress: ProgressFn | None = None,
) -> Undone:
    """Undo ``names`` (or the newest ``steps`` applied), newest-applied first; ``confirm``
    is asked (with the policy that applies) before the backup and anything undone."""
    if (steps is None) == (names is None):
        steps = 1 if names is None else steps
    if steps is not None and steps < 1:
        raise ConfigError("--steps must be 1 or more")
    found = migrations.discover(settings.migrations_dir)
    target = db_target.of(settings)
    table, audit_table = target.history, target.audit
    run = audit.Run.of(settings, "rollback", run_id)
    with migrate_session(target, "rollback", wait=settings.lock_wait) as conn:
        refuse_standby(conn)
        with _recorded(conn, audit_table, run, dry_run=dry_run):  # a refusal has its row too
            with translated(conn, "reading what the database remembers of its env"):
                policy = protection.policy_of(target, conn)
            entries = compare(found, history.read_history(conn, table)).entries
            chosen = _choose(entries, steps=steps, names=names)
            if dry_run:
                return Undone(chosen, policy)
            from predeploy.commands import gates  # noqa: PLC0415 (a rollback that changes something)

            gates.no_backup(policy, _Asked(no_backup))
            check_bookkeeping(conn, table, audit_table, needs=ROLLBACK, then="nothing was undone")
            confirm(chosen, conn.info.dbname, policy)
            taken = _backup(
                target, settings.backup, policy, run, no_backup=no_backup, progress=progress
            )
        if policy.marks:
            protection.mark(conn, audit_table, env=settings.env, command="rollback", run_id=run_id)
        error = _undo_all(conn, settings, (chosen, policy), run, on_done, target=target)
        if error is None:
            audit.record(conn, audit_table, run, "rolled back", None)
    return _ended(settings, run, Undone(chosen, policy, taken, error=error))


def _ended(settings: Settings, run: audit.Run, done: Undone) -> Undone:
    """The runbook (after a backup, or a failure: it says what that left) and the
    notification of a rollback that ran its down.sql files, or some of them."""
    undone = tuple(m["name"] for m in run.migrations)
    book, error = None, done.error
    if done.backup is not None or error is not None:
        book = _runbook(settings, (done.chosen, undone), done.backup, run.run_id, error)
    code = error.exit_code if error is not None else 0
    message = error.message if error is not None else None
    _announce(settings, run, message, code, protected=done.policy.protected, runbook=book)
    return Undone(done.chosen, done.policy, done.backup, book, error, undone)


@contextmanager
def _recorded(conn: Conn, table: history.Table, run: audit.Run, *, dry_run: bool) -> Iterator[None]:
    """The audit row of a rollback that stopped before undoing anything: refused (no
    terminal to ask on, declined, --no-backup), failed (a missing down.sql, the backup) or
    interrupted; a dry run leaves none."""
    try:
        yield
    except (PredeployError, KeyboardInterrupt) as exc:
        if not dry_run:
            stopped = exc if isinstance(exc, PredeployError) else interrupted(exc, "rolling back")
            audit.record(conn, table, run, audit.outcome_of(stopped), stopped.message)
        raise


def _backup(
    target: db_target.Target,
    settings: BackupSettings,
    policy: Policy,
    run: audit.Run,
    *,
    no_backup: bool,
    progress: ProgressFn | None,
) -> BackupResult | None:
    """A protected rollback's verified backup, taken first (as migrate's is)."""
    if not policy.protected or no_backup:
        return None
    from predeploy.backup import dump  # noqa: PLC0415 (pg_dump's machinery)

    taken = dump.backup(target, settings, reason="pre-rollback", progress=progress)
    run.backup_path, run.backup_sha256 = str(taken.path), taken.sha256
    return taken


def _runbook(
    settings: Settings,
    done: tuple[list[Chosen], tuple[str, ...]],
    taken: BackupResult | None,
    run_id: str,
    error: MigrationError | None,
) -> Runbook:
    """How to undo a rollback: migrate again (in the phase of each undone migration), the
    backup it took as the last resort; after a failed down.sql, what that left."""
    from predeploy.commands import runbook  # noqa: PLC0415

    chosen, undone = done
    backup = runbook.TakenBackup(taken.path, taken.created_at) if taken is not None else None
    post = frozenset(c.migration.name for c in chosen if c.migration.phase == POST_DEPLOY)
    return runbook.after_rollback(
        settings,
        undone=list(undone),
        backup=backup,
        run_id=run_id,
        post_deploy=post,
        failed=_failed(chosen, undone, error),
    )


def _failed(
    chosen: list[Chosen], undone: tuple[str, ...], error: MigrationError | None
) -> UndoFailed | None:
    """The migration whose down.sql failed (the first not undone) and what of it ran."""
    from predeploy.commands.runbook import UndoFailed  # noqa: PLC0415

    if error is None or len(undone) >= len(chosen):
        return None
    item = chosen[len(undone)]
    transactional = item.down.transactional
    ran: tuple[str, ...] | None = ()
    if not transactional:
        cause = error.__cause__
        ran = cause.ran if isinstance(cause, MigrationFailed) else None
    return UndoFailed(item.migration.name, transactional, ran)


def _announce(
    settings: Settings,
    run: audit.Run,
    error: str | None,
    exit_code: int = 0,
    *,
    protected: bool | None = None,
    runbook: Runbook | None = None,
) -> None:
    from predeploy.commands.announce import announce  # noqa: PLC0415 (only with notifications on)

    report = {
        "env": settings.env,
        "outcome": "failed" if error else "ok",
        "error": error,
        "rolled_back": run.migrations,
        "runbook": runbook.commands if runbook is not None else [],
        "runbook_path": str(runbook.path) if runbook is not None and runbook.path else None,
    }
    for warning in announce(
        settings,
        "rollback",
        report,
        changed=bool(run.migrations),
        exit_code=exit_code,
        protected=protected,
    ):
        log.warning("notification_warning", detail=warning)


def _undo_all(
    conn: Conn,
    settings: Settings,
    undoing: tuple[list[Chosen], Policy],
    run: audit.Run,
    on_done: Callable[[executor.Applied], None] | None,
    *,
    target: db_target.Target,
) -> MigrationError | None:
    """Undo each of ``chosen`` in turn; a down.sql that fails ends it: its audit row is
    written and the error returned (the caller says what it left, and how back)."""
    chosen, policy = undoing
    audit_table = target.audit
    options = executor.run_options(target, lock_retries=settings.lock_retries)
    try:
        with executor.Executor(conn, options) as run_scripts:
            for item in chosen:
                done = run_scripts.undo(item.migration, item.down)
                run.migrations.append({"name": done.name, "seconds": round(done.seconds, 4)})
                if on_done is not None:
                    on_done(done)
    except MigrationError as exc:
        undone = ", ".join(m["name"] for m in run.migrations) or "none"
        error = MigrationError(f"{exc.message} (already undone in this run: {undone})")
        error.exit_code = exc.exit_code  # 2 for a missing privilege, 5 for the SQL
        error.__cause__ = exc  # what of a down.sql outside a transaction ran (the runbook)
        audit.record(conn, audit_table, run, "failed", str(error))
        return error
    except KeyboardInterrupt as exc:
        audit.record(conn, audit_table, run, "interrupted", None)
        code = exc.exit_code if isinstance(exc, Terminated) else 130
        _announce(settings, run, "interrupted", code, protected=policy.protected)
        raise
    return None


def _choose(
    entries: tuple[Entry, ...], *, steps: int | None, names: list[str] | None
) -> list[Chosen]:
    """The migrations to undo, newest-applied first; MigrationError/ConfigError if unsafe."""
    live = sorted(
        (e for e in entries if e.state in ("applied", "edited", "missing")),
        key=_applied_at,
        reverse=True,
    )
    if names is not None:
        by_name = {e.name: e for e in live}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            state = {e.name: e.state for e in entries}
            listed = ", ".join(f"{n} ({state.get(n, 'unknown')})" for n in unknown)
            raise ConfigError(f"not applied, so nothing to undo: {listed}; see predeploy status")
        wanted = [e for e in live if e.name in set(names)]
        newest = live.index(wanted[-1])
        on_top = [e.name for e in live[:newest] if e.name not in set(names)]
        if on_top:
            raise MigrationError(
                f"{', '.join(on_top)} applied after {', '.join(names)}: undo those first (name "
                f"them too in --migrations) or undo by hand; nothing was undone"
            )
    else:
        assert steps is not None  # noqa: S101 (one of the two is given)
        if len(live) < steps:
            raise ConfigError(f"only {len(live)} migration(s) are applied: cannot undo {steps}")
        wanted = live[:steps]
    return [_checked(e) for e in wanted]


def _applied_at(entry: Entry) -> tuple[float, bytes]:
    finished = entry.row.finished_at if entry.row is not None else None
    return (finished.timestamp() if finished is not None else 0.0, entry.name.encode())


def _checked(entry: Entry) -> Chosen:
    """The migration and its parsed down.sql; refused when unusable."""
    if entry.state == "missing" or entry.migration is None:
        raise MigrationError(
            f"{entry.name} is applied but its folder is missing on disk: restore the folder "
            f"(git checkout) to undo it; nothing was undone"
        )
    migration = entry.migration
    if entry.state == "edited":
        raise MigrationError(
            f"{migration.sql_path} changed since {entry.name} was applied: its down.sql may "
            f"not undo what ran; restore the applied version (git checkout) first; nothing "
            f"was undone"
        )
    down = migration.down_script
    if down is None or not down.statements:
        raise MigrationError(
            f"no down.sql (or only comments) for {entry.name}: nothing was undone; restore a "
            f"backup instead (predeploy backups, predeploy restore)"
        )
    return Chosen(migration, down)
