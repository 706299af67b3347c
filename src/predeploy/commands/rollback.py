"""`predeploy rollback`: run the down.sql of named (or the last N applied) migrations.

Which migrations, in which order, and running their down.sql: ``predeploy.migrate.undo``.
This verb is the run around it: the policy follows the database (``predeploy.db.protection``):
under a protected one (the env's, or one the database remembers) a verified backup is
taken first, as migrate does (``--no-backup`` only with PREDEPLOY_ALLOW_NO_BACKUP=1), and
a runbook names it; its audit row, notification and runbook come from the run's
``Lifecycle`` (a refusal has its row too; a dry run leaves none).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from predeploy.commands.run import Lifecycle
from predeploy.config.parts import BackupSettings
from predeploy.config.policy import Policy
from predeploy.config.settings import Settings
from predeploy.db import protection
from predeploy.db import target as db_target
from predeploy.db.connect import Conn, refuse_standby
from predeploy.db.failures import translated
from predeploy.db.locks import migrate_session
from predeploy.errors import ConfigError, MigrationError
from predeploy.migrate import discovery as migrations
from predeploy.migrate import executor, history
from predeploy.migrate.discovery import POST_DEPLOY
from predeploy.migrate.outcome import MigrationFailed
from predeploy.migrate.privileges import ROLLBACK, check_bookkeeping
from predeploy.migrate.status import Entry, compare
from predeploy.migrate.undo import Chosen, choose, undo_all

if TYPE_CHECKING:
    from predeploy.backup.dump import BackupResult
    from predeploy.backup.progress import ProgressFn
    from predeploy.commands.runbook import Runbook, UndoFailed

__all__ = ["Undone", "rollback"]

log = structlog.get_logger(__name__)


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
    dry_run: bool = False  # --dry-run: ``chosen`` is what it would undo
    not_applied: tuple[str, ...] = ()  # a fleet's target: named, pending here, left alone

    def undone_names(self) -> list[str]:
        if self.undone is not None:
            return list(self.undone)
        return [c.migration.name for c in self.chosen]

    def fleet_outcome(self) -> str:
        """A target's word in a fleet's rollback: rolled back (some or all of the named
        migrations; the others were not applied there), not applied (none of them was:
        nothing to undo, nothing changed) or failed (its down.sql)."""
        if self.error is not None:
            return "failed"
        if self.dry_run:
            return "would roll back" if self.chosen else "not applied"
        return "rolled back" if self.undone_names() else "not applied"

    def fleet_detail(self) -> dict[str, Any]:
        undone = [] if self.dry_run else self.undone_names()
        return ({"rolled_back": undone} if undone else {}) | {"not_applied": list(self.not_applied)}

    def as_dict(self) -> dict[str, Any]:
        names = set(self.undone_names())
        undone = [
            {"name": i.migration.name, "down": str(i.migration.down_path), "sql": i.down.text}
            for i in self.chosen
            if self.dry_run or i.migration.name in names
        ]
        failure = {} if self.error is None else {
            "error": self.error.message, "exit_code": self.error.exit_code
        }  # fmt: skip
        return {
            "dry_run": self.dry_run,
            "rolled_back": [] if self.dry_run else undone,
            "would_undo": undone if self.dry_run else [],
            "backup": self.backup.as_dict() if self.backup else None,
            "runbook": self.runbook.commands if self.runbook else [],
            "policy": self.policy.describe(),
            **failure,
        }


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
    if settings.member is not None and settings.in_fleet:  # the fleet asked once: never again
        confirm = _fleet_gate(settings.member.confirmed, no_backup)
    life = Lifecycle.start(settings, "rollback", run_id)
    with migrate_session(target, "rollback", wait=settings.lock_wait) as conn:
        refuse_standby(conn)
        with _recorded(life, conn, dry_run=dry_run):  # a refusal has its row too
            with translated(conn, "reading what the database remembers of its env"):
                policy = protection.policy_of(target, conn)
            life.protected = policy.protected
            entries = compare(found, history.read_history(conn, table)).entries
            names, pending = _here(settings, entries, names)
            if names == []:  # a fleet's target where none of them was applied: nothing to do
                return Undone([], policy, undone=(), dry_run=dry_run, not_applied=pending)
            chosen = choose(entries, steps=steps, names=names)
            if dry_run:
                return Undone(chosen, policy, dry_run=True, not_applied=pending)
            from predeploy.commands import gates  # noqa: PLC0415 (a rollback that changes something)

            gates.no_backup(policy, _Asked(no_backup))
            check_bookkeeping(conn, table, audit_table, needs=ROLLBACK, then="nothing was undone")
            confirm(chosen, conn.info.dbname, policy)
            taken = _backup(
                target, settings.backup, policy, life, no_backup=no_backup, progress=progress
            )
        if policy.marks:
            protection.mark(conn, audit_table, env=settings.env, command="rollback", run_id=run_id)
        _undo(life, conn, chosen, on_done, target=target)
    return _ended(life, Undone(chosen, policy, taken, not_applied=pending))


def _fleet_gate(confirmed: bool, no_backup: bool) -> Callable[[list[Chosen], str, Policy], None]:
    """A fleet target's gate: the fleet's one confirmation (or --yes) stands for its own;
    a target whose database asks for one the fleet did not give is refused, never asked."""
    from predeploy.commands import gates  # noqa: PLC0415 (a rollback that changes something)

    def never(_question: str) -> str:
        return ""

    return gates.confirm_undo(gates.Asked(confirmed, False, never), no_backup=no_backup)


def _here(
    settings: Settings, entries: tuple[Entry, ...], names: list[str] | None
) -> tuple[list[str] | None, tuple[str, ...]]:
    """A fleet's target: the named migrations less those pending here (on disk, never
    applied to this target: tenants move at their own pace), and those. A single run, or
    a name failed, unknown or missing here: unchanged (``choose`` refuses it as ever)."""
    if not settings.in_fleet or names is None:
        return names, ()
    state = {e.name: e.state for e in entries}
    pending = tuple(n for n in names if state.get(n) == "pending")
    return [n for n in names if n not in pending], pending


def _recorded(life: Lifecycle, conn: Conn, *, dry_run: bool) -> AbstractContextManager[None]:
    """The audit row of a rollback that stopped before undoing anything: refused (no
    terminal to ask on, declined, --no-backup), failed (a missing down.sql, the backup) or
    interrupted; a dry run leaves none."""
    return nullcontext() if dry_run else life.recorded("rolling back", conn)


def _undo(
    life: Lifecycle,
    conn: Conn,
    chosen: list[Chosen],
    on_done: Callable[[executor.Applied], None] | None,
    *,
    target: db_target.Target,
) -> None:
    """Undo each of ``chosen`` in turn; its row says rolled back, or the down.sql that
    failed ended it (the run's ``error``: the caller says what it left, and how back); a
    signal writes its row and notification, then ends the command."""

    def done(undone: executor.Applied) -> None:
        life.trail.migrations.append({"name": undone.name, "seconds": round(undone.seconds, 4)})
        if on_done is not None:
            on_done(undone)

    try:
        options = executor.run_options(target, lock_retries=life.settings.lock_retries)
        undo_all(conn, options, chosen, done)
    except MigrationError as exc:
        undone = ", ".join(m["name"] for m in life.trail.migrations) or "none"
        error = MigrationError(f"{exc.message} (already undone in this run: {undone})")
        error.exit_code = exc.exit_code  # 2 for a missing privilege, 5 for the SQL
        error.__cause__ = exc  # what of a down.sql outside a transaction ran (the runbook)
        life.error = error
        life.record(conn=conn, detail=str(error))
        return
    except KeyboardInterrupt as exc:
        life.error = life.stopped(exc, "rolling back")
        life.record(conn=conn)
        life.announce_logged(_report(life, "interrupted"), changed=bool(life.trail.migrations))
        raise
    life.record(conn=conn)


def _ended(life: Lifecycle, done: Undone) -> Undone:
    """The runbook (after a backup, or a failure: it says what that left) and the
    notification of a rollback that ran its down.sql files, or some of them."""
    undone = tuple(m["name"] for m in life.trail.migrations)
    error = life.error if isinstance(life.error, MigrationError) else None
    if done.backup is not None or error is not None:
        life.hand_off(lambda: _runbook(life, (done.chosen, undone), done.backup, error))
    message = error.message if error is not None else None
    life.announce_logged(_report(life, message), changed=bool(life.trail.migrations))
    return Undone(
        done.chosen, done.policy, done.backup, life.runbook, error, undone, False, done.not_applied
    )


def _report(life: Lifecycle, error: str | None) -> dict[str, Any]:
    """What the notification says of a rollback."""
    book = life.runbook
    return {
        "env": life.settings.env,
        "outcome": "failed" if error else "ok",
        "error": error,
        "rolled_back": life.trail.migrations,
        "runbook": book.commands if book is not None else [],
        "runbook_path": str(book.path) if book is not None and book.path else None,
    }


def _backup(
    target: db_target.Target,
    settings: BackupSettings,
    policy: Policy,
    life: Lifecycle,
    *,
    no_backup: bool,
    progress: ProgressFn | None,
) -> BackupResult | None:
    """A protected rollback's verified backup, taken first (as migrate's is)."""
    if not policy.protected or no_backup:
        return None
    from predeploy.backup import dump  # noqa: PLC0415 (pg_dump's machinery)

    taken = dump.backup(target, settings, reason="pre-rollback", progress=progress)
    life.trail.backup_path, life.trail.backup_sha256 = str(taken.path), taken.sha256
    return taken


def _runbook(
    life: Lifecycle,
    done: tuple[list[Chosen], tuple[str, ...]],
    taken: BackupResult | None,
    error: MigrationError | None,
) -> Runbook:
    """How to undo a rollback: migrate again (in the phase of each undone migration), the
    backup it took as the last resort; after a failed down.sql, what that left."""
    from predeploy.commands import runbook  # noqa: PLC0415

    chosen, undone = done
    backup = runbook.TakenBackup(taken.path, taken.created_at) if taken is not None else None
    post = frozenset(c.migration.name for c in chosen if c.migration.phase == POST_DEPLOY)
    return runbook.after_rollback(
        life.settings,
        undone=list(undone),
        backup=backup,
        run_id=life.run_id,
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
