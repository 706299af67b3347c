"""`predeploy migrate`: the whole pre-deploy runbook as one run.

    connectivity → history and plan → pending list → lint → privileges → backup
    → confirmation → blocker scan → apply → post-apply checks → runbook → audit

Each step is recorded with its outcome and duration; every gate reads the env's policy.
Nothing pending ends the run at once (no backup, no prompt). A failure, or SIGINT/SIGTERM,
still yields the report, with the runbook of what the run changed, and every run that
reached the database leaves an audit row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from predeploy._util import lazy
from predeploy._util.log import REPORTED
from predeploy._util.operator import operator
from predeploy.commands import summary
from predeploy.commands.lint import lint_migrations
from predeploy.commands.steps import OnStep, Skip, Step, Stepper, note, skip, stepper
from predeploy.config.policy import Policy
from predeploy.config.settings import Settings
from predeploy.db import audit, protection
from predeploy.db import target as db_target
from predeploy.db.connect import Conn, catalog_session, refuse_standby
from predeploy.db.failures import translated
from predeploy.db.locks import migrate_session
from predeploy.errors import (
    CheckFailed,
    MigrationError,
    PredeployError,
    interrupted,
)
from predeploy.migrate import discovery as migrations
from predeploy.migrate import history
from predeploy.migrate.discovery import POST_DEPLOY, PRE_DEPLOY
from predeploy.migrate.plan import OutOfPhase, Plan, make_plan
from predeploy.migrate.privileges import check_bookkeeping, check_dump
from predeploy.migrate.status import compare

if TYPE_CHECKING:
    from predeploy.backup import dump as backup
    from predeploy.backup.dump import BackupResult
    from predeploy.backup.progress import ProgressFn
    from predeploy.commands import gates
    from predeploy.commands import runbook as runbook_mod
    from predeploy.commands.runbook import Runbook
    from predeploy.drift.report import DriftReport
    from predeploy.migrate import executor
    from predeploy.migrate.blockers import Blocker
    from predeploy.migrate.lint import LintReport
else:  # needed only when something is pending (nothing pending must start fast)
    gates = lazy.module("predeploy.commands.gates")
    runbook_mod = lazy.module("predeploy.commands.runbook")
    backup = lazy.module("predeploy.backup.dump")
    executor = lazy.module("predeploy.migrate.executor")

__all__ = ["Applying", "Options", "Pending", "Report", "Step", "migrate"]

log = structlog.get_logger(__name__)


# (name, its place 1..n, n) before each migration runs; (None, done, n) when the apply ends
Applying = Callable[[str | None, int, int], None]


@dataclass(frozen=True)
class Options:
    """How this run was asked for."""

    yes: bool = False
    dry_run: bool = False
    rehearse: bool = False
    no_backup: bool = False
    force_lint: bool = False
    allow_drift: bool = False
    drift_said_skipped: bool = False  # deploy's post phase: its pre phase said why already
    post_deploy: bool = False  # apply the post-deploy migrations instead of the pre-deploy ones
    notify: bool = True  # deploy sends one notification for the whole deploy
    interactive: bool = False
    ask: Callable[[str], str] = input
    progress: ProgressFn | None = None
    applying: Applying | None = None  # on a terminal: the migration that runs now


@dataclass(frozen=True)
class Pending:
    """A pending migration as the report shows it: no SQL unless it is a dry run."""

    name: str
    statements: int | None  # None: PostgreSQL's parser (pglast) cannot parse the file
    transactional: bool
    has_down: bool
    checksum: str
    phase: str = PRE_DEPLOY
    sql: str | None = None


@dataclass
class Report:
    """What a migrate run did; ``error`` is set when it stopped on one."""

    env: str
    database: str = ""
    phase: str = PRE_DEPLOY
    steps: list[Step] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    later: list[str] = field(default_factory=list)  # pending in the other phase
    applied: list[executor.Applied] = field(default_factory=list)
    backup: BackupResult | None = None
    rehearsal: list[executor.Rehearsed] = field(default_factory=list)
    lint: LintReport | None = None
    drift: DriftReport | None = None
    blockers: list[Blocker] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    runbook: Runbook | None = None
    error: PredeployError | None = None
    policy: dict[str, Any] = field(default_factory=dict)  # which policy applied, and why

    @property
    def failed_step(self) -> str | None:
        return next((s.name for s in self.steps if s.outcome in ("failed", "interrupted")), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "database": self.database,
            "phase": self.phase,
            "outcome": "failed" if self.error else "ok",
            "error": str(self.error) if self.error else None,
            "exit_code": self.error.exit_code if self.error else 0,
            "steps": [s.__dict__ for s in self.steps],
            "pending": [
                {k: v for k, v in p.__dict__.items() if k != "sql" or v is not None}
                for p in self.pending
            ],
            "applied": [a.__dict__ for a in self.applied],
            "backup": self.backup.as_dict() if self.backup else None,
            "rehearsal": [r.as_dict() for r in self.rehearsal],
            "lint": self.lint.as_dict() if self.lint else None,
            "drift": self.drift.as_dict() if self.drift else None,
            "blockers": [b.as_dict() for b in self.blockers],
            "warnings": self.warnings,
            "later": self.later,
            "runbook": self.runbook.commands if self.runbook else [],
            "policy": self.policy,
            "runbook_path": str(self.runbook.path) if self.runbook and self.runbook.path else None,
        }


@dataclass
class _Run:
    """One migrate run's context: what it was asked, what it is allowed, what it did."""

    settings: Settings
    target: db_target.Target
    policy: Policy
    options: Options
    report: Report
    trail: audit.Run
    step: Stepper
    on_step: OnStep | None

    def skip(self, *names: str, detail: str, seconds: float = 0.0) -> None:
        skip(self.report.steps, self.on_step, *names, detail=detail, seconds=seconds)


def migrate(
    settings: Settings,
    options: Options,
    run_id: str,
    on_step: OnStep | None = None,
    *,
    again: list[str] | None = None,
) -> Report:
    """Run the workflow; returns the report (with ``error`` set on failure). ``again``: how
    its runbook says to run it again (a deploy's: the deploy), else this migrate's words."""
    report = Report(env=settings.env, phase=POST_DEPLOY if options.post_deploy else PRE_DEPLOY)
    trail = audit.Run.of(settings, "migrate", run_id)
    target = db_target.of(settings)
    run = _Run(
        settings,
        target,
        target.env_policy,
        options,
        report,
        trail,
        stepper(report.steps, on_step),
        on_step,
    )
    try:
        _workflow(run)
    except PredeployError as exc:
        report.error = exc
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM (Terminated): report, then exit
        report.error = interrupted(exc, f"migrating ({report.failed_step or 'between steps'})")
    if not options.dry_run and not options.rehearse and (report.applied or report.error):
        taken = report.backup
        report.runbook = runbook_mod.build_runbook(
            settings,
            backup=runbook_mod.TakenBackup(taken.path, taken.created_at) if taken else None,
            applied=report.applied,
            error=report.error,
            run_id=run_id,
            has_down={p.name: p.has_down for p in report.pending},
            again=again or _again(settings.env, options),
        )
    if report.database and not options.dry_run and not options.rehearse:
        _audit(target, trail, report)
        if options.notify:
            _announce(settings, report, protected=run.policy.protected)
    return report


def _again(env: str, options: Options) -> list[str]:
    """This migrate as it was asked: its flags (--yes: pasted without a terminal, a bare
    migrate in a protected env is refused)."""
    flags = ("post_deploy", "yes", "no_backup", "force_lint", "allow_drift")
    return runbook_mod.again_words("migrate", env, **{f: getattr(options, f) for f in flags})


def _announce(settings: Settings, report: Report, *, protected: bool) -> None:
    from predeploy.commands.announce import announce  # noqa: PLC0415 (only with notifications on)

    left_failed = runbook_mod.left_failed_by(report.error) is not None
    drifted = report.drift is not None and report.drift.drifted
    report.warnings += announce(
        settings,
        "migrate",
        report.as_dict(),
        changed=bool(report.applied) or left_failed,
        exit_code=report.error.exit_code if report.error else 0,
        drift=len(report.drift.differences) if report.drift is not None and drifted else 0,
        protected=protected,
    )


def _workflow(run: _Run) -> None:
    held = ExitStack()
    with run.step("connectivity"):
        # the migrate lock is held from here to the end: nobody else migrates between
        # our backup and our apply, and a concurrent run waits (LOCK_WAIT) or exits 6
        conn = held.enter_context(
            migrate_session(run.target, "migrate", wait=run.settings.lock_wait)
        )
    with held:
        _follow_target(run, conn)
        _locked_workflow(run, conn)


def _follow_target(run: _Run, conn: Conn) -> None:
    """The policy follows the database: what it remembers, and whether it is local."""
    started = time.perf_counter()
    with translated(conn, "reading what the database remembers of its env"):
        run.policy = protection.policy_of(run.target, conn)
    policy = run.policy
    run.report.policy = {
        "target": policy.target,
        "protected": policy.protected,
        "why": policy.why,
        "deployed_as": policy.deployed_as,
    }
    note(run.report.steps, run.on_step, "policy", policy.describe(), time.perf_counter() - started)


def _mark(run: _Run, conn: Conn) -> None:
    """A protected env's change makes the database remember it (same session, first)."""
    if run.policy.marks and not run.options.dry_run and not run.options.rehearse:
        protection.mark(
            conn, run.target.audit, env=run.settings.env, command="migrate", run_id=run.trail.run_id
        )


def _locked_workflow(run: _Run, conn: Conn) -> None:
    settings, policy, options, report, step = (
        run.settings,
        run.policy,
        run.options,
        run.report,
        run.step,
    )
    table, audit_table = run.target.history, run.target.audit
    with step("history"):
        refuse_standby(conn)
        report.database = conn.info.dbname
        found = migrations.discover(settings.migrations_dir)
        status = compare(found, history.read_history(conn, table))
        plan = make_plan(status, policy, report.phase)
        report.later = [m.name for m in plan.later]
        report.warnings = list(plan.warnings)
        for warning in plan.warnings:
            log.warning("plan_warning", detail=warning, **{REPORTED: True})
        plan.refuse()
    with step("pending"):
        report.pending = [_describe(m, with_sql=options.dry_run) for m in plan.pending]
    if not report.pending:
        log.info("nothing_pending")
        _mark(run, conn)  # once: an up-to-date production database learns what it is
        return
    if not options.dry_run and not options.rehearse:  # before lint, drift and their shadow
        gates.refuse_without_terminal(policy, options, report.database, "migrating")
        gates.no_backup(policy, options)
    with step("lint"):
        report.lint = lint_migrations(settings, conn, list(plan.pending))
        gates.lint(policy, report.lint, force=options.force_lint or options.dry_run)
    if policy.drift_checked and not options.drift_said_skipped:
        _drift(run)
    if options.dry_run:
        if plan.stop is not None:  # the run would stop after the pending ones: say so
            report.warnings.append(plan.stop.message)
        run.skip("backup", "confirmation", "apply", detail="dry run")
        return
    if options.rehearse:
        _rehearse(run, conn, plan)
        return
    with step("privileges"):
        check_bookkeeping(conn, table, audit_table)
        if policy.backup_required and not options.no_backup:  # pg_dump must read it all
            check_dump(conn)
    _backup(run)
    _confirm(run)
    with step("blockers"):
        report.blockers = gates.blockers(
            settings, policy, options, conn=conn, pending=plan.pending, database=report.database
        )
    with step("apply"):
        history.ensure_history(conn, table)  # and its schema: the marker's table lives there
        _mark(run, conn)
        with (
            executor.Executor(conn, _options(run)) as run_scripts,
            _showing(options.applying, [m.name for m in plan.pending]) as shown,
        ):
            run_scripts.apply_all(plan.pending, lambda applied: _applied(run, applied, shown))
    with step("post-apply checks"):
        _after(conn, table, found, policy, plan)
    if plan.stop is not None:  # what could run in name order did; the rest waits
        raise plan.stop


def _applied(run: _Run, applied: executor.Applied, shown: Callable[[], None]) -> None:
    run.report.applied.append(applied)
    run.trail.migrations.append({"name": applied.name, "seconds": round(applied.seconds, 4)})
    shown()


@contextmanager
def _showing(applying: Applying | None, names: list[str]) -> Iterator[Callable[[], None]]:
    """Tells ``applying`` the migration that runs: the first now, the next as each one is
    applied; the end (also a failure or an interrupt) as ``None``."""
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        if applying is not None and done < len(names):
            applying(names[done], done + 1, len(names))

    if applying is None or not names:
        yield advance
        return
    applying(names[0], 1, len(names))
    try:
        yield advance
    finally:
        applying(None, done, len(names))


def _backup(run: _Run) -> None:
    if not run.policy.backup_required or run.options.no_backup:
        why = "--no-backup" if run.options.no_backup else f"not required in {run.policy.env}"
        run.skip("backup", detail=why)
        return
    with run.step("backup"):
        taken = backup.backup(
            run.target, run.settings.backup, reason="pre-migrate", progress=run.options.progress
        )
        run.report.backup = taken
        run.trail.backup_path, run.trail.backup_sha256 = str(taken.path), taken.sha256


def _drift(run: _Run) -> None:
    """A protected env compares live with its applied migrations before changing anything:
    drift is shown in the question, and refuses --yes unless --allow-drift."""
    from predeploy.commands.drift import checked  # noqa: PLC0415 (protected envs only)

    with run.step("drift"):  # its duration is the whole check's, shadow build included
        report, problem = checked(run.settings)
        run.report.drift = report
        if problem is not None:  # said once, by the step: "- drift  (skipped: ...)", not ✓
            raise Skip(f"skipped: {problem}")
        assert report is not None  # noqa: S101 (checked returns one of the two)
        _drift_found(run, report)


def _drift_found(run: _Run, report: DriftReport) -> None:
    """Drift is logged; with --yes it refuses unless --allow-drift."""
    if not report.drifted:
        return
    for difference in report.differences:
        log.warning(
            "drift",
            kind=difference.kind,
            name=difference.name,
            change=difference.change,
            **{REPORTED: True},
        )
    options = run.options
    if options.yes and not options.allow_drift and not options.dry_run and not options.rehearse:
        raise CheckFailed(
            f"{len(report.differences)} difference(s) between {report.database} and its applied "
            f"migrations (drift): review them (predeploy drift --env {run.policy.env}), then pass "
            f"--allow-drift to migrate anyway (logged with your name); nothing was done"
        )
    if options.allow_drift:
        log.warning("drift_allowed", operator=operator(), differences=len(report.differences))


def _confirm(run: _Run) -> None:
    policy, options = run.policy, run.options
    if policy.confirmation == "none" or options.yes:
        who = f"--yes, by {operator()}" if options.yes else f"not required in {policy.env}"
        if options.yes:
            log.info("confirmation_waived", operator=operator(), env=policy.env)
        run.skip("confirmation", detail=who)
        return
    with run.step("confirmation"):
        gates.confirm(policy, options, run.report.database, _question(policy, run.report))


def _rehearse(run: _Run, conn: Conn, plan: Plan) -> None:
    """The pending migrations in a transaction that is rolled back; exit 5 if one fails."""
    policy, options, report = run.policy, run.options, run.report
    if policy.rehearse_confirmed:
        gates.refuse_without_terminal(policy, options, report.database, "rehearsing")
        if not options.yes:
            with run.step("confirmation"):
                question = _question(policy, report, "rehearse")
                gates.confirm(policy, options, report.database, question)
    with run.step("rehearsal"):
        with executor.Executor(conn, _options(run)) as run_scripts:
            report.rehearsal = run_scripts.rehearse(list(plan.pending))
        failed = [r for r in report.rehearsal if r.outcome == "failed"]
        if failed:
            error = MigrationError(f"rehearsal failed: {failed[0].detail}")
            error.exit_code = 2 if failed[0].sqlstate == "42501" else error.exit_code
            raise error


def _after(
    conn: Conn,
    table: history.Table,
    found: list[migrations.Migration],
    policy: Policy,
    plan: Plan,
) -> None:
    """The plan's rules again, on the history as the run left it: nothing of this phase
    pending but what the plan left waiting, nothing refusing but the phases' order."""
    after = make_plan(compare(found, history.read_history(conn, table)), policy, plan.phase)
    waiting = {m.name for m in plan.later}
    pending = [m.name for m in (*after.pending, *after.later) if m.name not in waiting]
    refusals = [r.message for r in after.refusals if not isinstance(r, OutOfPhase)]
    if pending or refusals:
        left = ", ".join(pending) or "; ".join(refusals)
        raise MigrationError(f"after applying, the history is not clean: {left}")


def _question(policy: Policy, report: Report, verb: str = "apply") -> str:
    """The confirmation question, one screen whatever the history's length: the pending
    names, warnings, drift and lint each cut to a few lines that say what they hid."""
    tool = f"{runbook_mod.program()} %s --env {policy.env}"
    names = [p.name for p in report.pending]
    where = policy.target or report.database
    about = f"About to {verb} {len(names)} migration(s) on {where} ({policy.label}):"
    short = len(names) <= 2 * summary.ENDS + 1
    lines = (
        [f"{about} {', '.join(names)}"]
        if short
        else [about, *summary.names(names, f"every one: {tool % 'status'} --all")]
    )
    lines.append(f"Backup: {report.backup.path}" if report.backup else "No backup was taken.")
    lines += summary.capped(
        [f"Warning: {w}" for w in report.warnings], summary.WARNINGS, "in the log file"
    )
    if report.drift is not None and report.drift.drifted:
        lines.append(f"Drift ({len(report.drift.differences)} difference(s) made by hand):")
        lines += summary.capped(
            [f"  {d.kind} {d.name}: {d.change}" for d in report.drift.differences],
            summary.DRIFT,
            tool % "drift",
        )
    return "\n".join(lines) + gates.lint_lines(report.lint, tool % "lint")


def _describe(migration: migrations.Migration, *, with_sql: bool) -> Pending:
    """A pending migration for the report; its SQL only for a dry run (secrets in it are
    masked where the report is printed, as everywhere)."""
    script = migration.parsed
    text = migration.text if with_sql else None
    return Pending(
        name=migration.name,
        statements=None if script.parse_error else len(script.statements),
        transactional=script.transactional,
        has_down=bool(migration.down_script and migration.down_script.statements),
        checksum=migration.checksum,
        phase=migration.phase,
        sql=text,
    )


describe = _describe  # deploy's dry run shows what its post-deploy phase would apply


def _options(run: _Run) -> executor.RunOptions:
    return executor.run_options(run.target, lock_retries=run.settings.lock_retries)


def _audit(target: db_target.Target, run: audit.Run, report: Report) -> None:
    """The run's row in the audit table; a failure to write it is only logged."""
    if report.error is None:
        outcome = "applied" if report.applied else "nothing pending"
    else:  # a gate between steps names itself: "refused: confirmation (no terminal)"
        last = report.steps[-1].name if report.steps else None
        where = report.failed_step or (f"after {last}" if last else "before the first step")
        outcome = audit.outcome_of(report.error, where)
    table = target.audit
    try:
        with (
            catalog_session(target.direct, purpose="audit") as conn,
            translated(conn, "writing the audit row"),
        ):
            audit.record(conn, table, run, outcome, str(report.error) if report.error else None)
    except PredeployError as exc:
        log.warning("audit_not_recorded", detail=str(exc))
