"""`invoke migrate`: the whole pre-deploy runbook as one run.

    connectivity → history checks → pending list → lint → backup → confirmation
    → blocker scan → apply → post-apply checks → rollback runbook → summary

Each step is recorded with its outcome and duration. Nothing pending ends the run
at once (no backup, no prompt). A failure still yields the report, with the
runbook that undoes what the run did, and every run leaves an audit row.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import structlog

from predeploy import audit
from predeploy.backup import dump as backup
from predeploy.backup.dump import BackupResult
from predeploy.backup.progress import ProgressFn
from predeploy.config.settings import Settings
from predeploy.confirm import operator, require_typed, require_yes
from predeploy.errors import (
    CheckFailed,
    ConfigError,
    DatabaseUnreachable,
    MigrationError,
    PredeployError,
    Refused,
)
from predeploy.migrate import blockers, commands, history
from predeploy.migrate import discovery as migrations
from predeploy.migrate import executor as runner
from predeploy.migrate.blockers import Blocker
from predeploy.migrate.discovery import Migration
from predeploy.migrate.lint import LintReport
from predeploy.migrate.lock import migrate_session
from predeploy.migrate.rehearse import rehearse
from predeploy.migrate.status import Status, compare
from predeploy.postgres.sessions import Conn, connect, target_url
from predeploy.runbook import Runbook, build_runbook
from predeploy.steps import OnStep, Step, Stepper, skip, stepper

__all__ = ["Options", "Pending", "Report", "Step", "migrate"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Options:
    """How this run was asked for."""

    yes: bool = False
    dry_run: bool = False
    rehearse: bool = False
    no_backup: bool = False
    force_lint: bool = False
    interactive: bool = False
    ask: Callable[[str], str] = input
    progress: ProgressFn | None = None


@dataclass(frozen=True)
class Pending:
    name: str
    statements: int
    transactional: bool
    has_down: bool
    sql: str


@dataclass
class Report:
    """What a migrate run did; ``error`` is set when it stopped on one."""

    env: str
    database: str = ""
    steps: list[Step] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    applied: list[runner.Applied] = field(default_factory=list)
    backup: BackupResult | None = None
    rehearsal: list[dict[str, Any]] = field(default_factory=list)
    lint: LintReport | None = None
    blockers: list[Blocker] = field(default_factory=list)
    runbook: Runbook | None = None
    error: PredeployError | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "database": self.database,
            "outcome": "failed" if self.error else "ok",
            "error": str(self.error) if self.error else None,
            "exit_code": self.error.exit_code if self.error else 0,
            "steps": [s.__dict__ for s in self.steps],
            "pending": [dict(p.__dict__) for p in self.pending],
            "applied": [a.__dict__ for a in self.applied],
            "backup": self.backup.as_dict() if self.backup else None,
            "rehearsal": self.rehearsal,
            "lint": self.lint.as_dict() if self.lint else None,
            "blockers": [b.as_dict() for b in self.blockers],
            "runbook": self.runbook.commands if self.runbook else [],
        }


def migrate(
    settings: Settings,
    options: Options,
    run_id: str,
    on_step: OnStep | None = None,
) -> Report:
    """Run the workflow; returns the report (with ``error`` set on failure)."""
    report = Report(env=settings.env)
    run = audit.Run(run_id=run_id, command="migrate", env=settings.env, root=settings.root)
    try:
        _workflow(settings, options, report, run, on_step)
    except PredeployError as exc:
        report.error = exc
    changed = bool(report.applied) or report.error is not None
    if changed and not options.dry_run and not options.rehearse:
        has_down = {p.name: p.has_down for p in report.pending}
        report.runbook = build_runbook(
            settings,
            backup=report.backup,
            applied=report.applied,
            error=report.error,
            run_id=run_id,
            has_down=has_down,
        )
    if report.database:
        _audit(settings, run, report, options)
    return report


def _workflow(
    settings: Settings,
    options: Options,
    report: Report,
    run: audit.Run,
    on_step: OnStep | None,
) -> None:
    step = stepper(report.steps, on_step)
    url, variable = target_url(settings, direct=True)
    held = ExitStack()
    with step("connectivity"):
        # the migrate lock is held from here to the end: nobody else migrates between
        # our backup and our apply, and a concurrent run waits (PREDEPLOY_LOCK_WAIT) or exits 6
        conn = held.enter_context(migrate_session(settings, url, variable, "migrate"))
    with held:
        _locked_workflow(
            settings, options, report=report, run=run, conn=conn, step=step, on_step=on_step
        )


def _locked_workflow(
    settings: Settings,
    options: Options,
    *,
    report: Report,
    run: audit.Run,
    conn: Conn,
    step: Stepper,
    on_step: OnStep | None,
) -> None:
    with step("history"):
        row = conn.execute("SELECT current_database(), pg_is_in_recovery()").fetchone()
        report.database = str(row[0]) if row else ""
        if row and row[1]:
            raise DatabaseUnreachable(
                f"{report.database} is a standby (read-only, in recovery): point "
                f"DIRECT_DATABASE_URL at the primary"
            )
        rows = history.read(conn, settings.migrations_table)
        found = migrations.discover(settings.migrations_dir)
        before: Status = compare(found, rows)
        commands.refuse_blocked(before, settings)
    with step("pending"):
        report.pending = [_describe(m) for m in before.pending]
    if not report.pending:
        log.info("nothing_pending")
        return
    with step("lint"):
        report.lint = commands.lint_migrations(settings, conn, before.pending)
        _lint_policy(settings, options, report.lint)
    if options.dry_run:
        skip(report.steps, on_step, "backup", "confirmation", "apply", detail="dry run")
        return
    if options.rehearse:
        with step("rehearsal"):
            report.rehearsal = rehearse(conn, before.pending)
        return
    strict = settings.env != "dev"
    if strict and not options.yes and not options.interactive:
        raise Refused(
            f"migrating {report.database} ({settings.env}) needs a confirmation and there is no "
            f"terminal to ask on: run it from a terminal, or pass --yes; nothing was done"
        )
    if options.no_backup and settings.env == "prod" and not settings.allow_no_backup:
        raise ConfigError(
            "--no-backup is refused in prod: set PREDEPLOY_ALLOW_NO_BACKUP=1 to run without a "
            "verified backup, if you really must"
        )
    if not strict or options.no_backup:
        why = "--no-backup" if options.no_backup else "not required in dev"
        skip(report.steps, on_step, "backup", detail=why)
    else:
        with step("backup"):
            report.backup = backup.backup(settings, reason="pre-migrate", progress=options.progress)
            run.backup_path, run.backup_sha256 = str(report.backup.path), report.backup.sha256
    if not strict or options.yes:
        why = "--yes, by " + operator() if options.yes else "not required in dev"
        if options.yes:
            log.info("confirmation_waived", operator=operator(), env=settings.env)
        skip(report.steps, on_step, "confirmation", detail=why)
    else:
        with step("confirmation"):
            _confirm(settings, options, report)
    with step("blockers"):
        _blockers(settings, options, report, conn, before.pending)
    with step("apply"):
        commands.migrate(settings, on_applied=report.applied.append, session=conn, found=found)
    with step("post-apply checks"):
        after = compare(found, history.read(conn, settings.migrations_table))
        if not after.up_to_date:
            counts = {k: v for k, v in after.counts().items() if v and k != "applied"}
            raise MigrationError(f"after applying, the history is not clean: {counts}")


def _lint_policy(settings: Settings, options: Options, lint: LintReport) -> None:
    """prod refuses error-level findings unless --force-lint; elsewhere they are shown."""
    for finding in (f for f in lint.active if f.severity != "info"):  # info: counted by lint
        log.warning(
            "lint_finding",
            migration=finding.migration,
            line=finding.line,
            rule=finding.rule,
            severity=finding.severity,
            tables=[t.table for t in finding.tables],
        )
    if not lint.errors or settings.env != "prod" or options.dry_run or options.rehearse:
        return
    named = ", ".join(sorted({f"{f.migration} {f.rule}" for f in lint.errors}))
    if options.force_lint:
        log.warning("lint_forced", operator=operator(), errors=len(lint.errors), findings=named)
        return
    raise CheckFailed(
        f"lint found {len(lint.errors)} error(s) in prod: {named}; fix them, waive a rule in "
        f"the file (-- predeploy: allow RULE), or pass --force-lint (logged with your name)"
    )


def _blockers(
    settings: Settings, options: Options, report: Report, conn: Conn, pending: list[Migration]
) -> None:
    """List sessions that would make the migration's locks wait; in prod, ask or wait."""
    names = blockers.tables_of(pending)
    report.blockers = blockers.scan(conn, names, settings.blocker_max_age)
    if not report.blockers:
        return
    for found in report.blockers:
        log.warning("blocker", detail=blockers.describe(found))
    if settings.env != "prod":
        return  # the runner's lock_timeout and retries bound the stall
    if options.yes or not options.interactive:
        left = blockers.wait_until_gone(
            conn, names, settings.blocker_max_age, settings.blocker_wait
        )
        report.blockers = left
        if left:
            raise MigrationError(
                f"{len(left)} session(s) still hold or wait for locks on the tables to migrate "
                f"after {settings.blocker_wait:g}s (PREDEPLOY_BLOCKER_WAIT): "
                + "; ".join(blockers.describe(b) for b in left)
                + "; nothing was applied"
            )
        log.info("blockers_gone")
        return
    require_yes(
        "Sessions that would block this migration's locks:\n"
        + "\n".join(f"  {blockers.describe(b)}" for b in report.blockers)
        + "\nApplying now makes application queries on those tables wait up to "
        "PREDEPLOY_LOCK_TIMEOUT "
        "per attempt.",
        yes=False,
        interactive=options.interactive,
        ask=options.ask,
        action=f"migrating {report.database} past blocking sessions",
    )


def _confirm(settings: Settings, options: Options, report: Report) -> None:
    names = ", ".join(p.name for p in report.pending)
    question = (
        f"About to apply {len(report.pending)} migration(s) to {report.database} "
        f"({settings.env}): {names}"
        + (f"\nBackup: {report.backup.path}" if report.backup else "\nNo backup was taken.")
        + _lint_lines(report.lint)
    )
    action = f"migrating {report.database} ({settings.env})"
    if settings.env == "prod":
        require_typed(
            report.database,
            question,
            yes=options.yes,
            interactive=options.interactive,
            ask=options.ask,
            action=action,
        )
    else:
        require_yes(
            question,
            yes=options.yes,
            interactive=options.interactive,
            ask=options.ask,
            action=action,
        )


def _lint_lines(lint: LintReport | None) -> str:
    if lint is None or not lint.active:
        return "\nLint: no findings." if lint is not None else ""
    lines = [f"\nLint ({len(lint.active)} finding(s)):"]
    for f in lint.active:
        sizes = ", ".join(f"{t.table} ~{t.rows:,} rows" for t in f.tables)
        lines.append(
            f"  {f.severity:<7} {f.migration}:{f.line} {f.rule}" + (f" ({sizes})" if sizes else "")
        )
    return "\n".join(lines)


def _describe(migration: migrations.Migration) -> Pending:
    text = migration.text
    script = migration.parsed
    return Pending(
        name=migration.name,
        statements=len(script.statements),
        transactional=script.transactional,
        has_down=migration.down_path is not None,
        sql=text,
    )


def _audit(settings: Settings, run: audit.Run, report: Report, options: Options) -> None:
    if options.dry_run or options.rehearse:
        return
    run.migrations = [{"name": a.name, "seconds": round(a.seconds, 4)} for a in report.applied]
    outcome = "failed" if report.error else ("applied" if report.applied else "nothing pending")
    try:
        url, variable = target_url(settings, direct=True)
        with connect(url, timeout=settings.connect_timeout, variable=variable) as conn:
            audit.record(
                conn,
                settings.audit_table,
                run,
                outcome,
                str(report.error) if report.error else None,
            )
    except PredeployError as exc:
        log.warning("audit_not_recorded", detail=str(exc))
