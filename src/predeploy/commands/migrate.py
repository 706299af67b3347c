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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import structlog

from predeploy._util import lazy
from predeploy._util.log import REPORTED
from predeploy._util.operator import operator
from predeploy.commands.lint import lint_migrations
from predeploy.commands.migrate_report import (
    Applying,
    Options,
    Report,
    describe,
    question,
)
from predeploy.commands.run import Lifecycle
from predeploy.commands.steps import OnStep, Skip, Stepper
from predeploy.config.policy import Policy
from predeploy.config.settings import Settings
from predeploy.db import protection
from predeploy.db import target as db_target
from predeploy.db.connect import Conn, refuse_standby
from predeploy.db.failures import translated
from predeploy.db.locks import migrate_session
from predeploy.errors import CheckFailed, MigrationError
from predeploy.migrate import discovery as migrations
from predeploy.migrate import history
from predeploy.migrate.discovery import POST_DEPLOY, PRE_DEPLOY
from predeploy.migrate.plan import OutOfPhase, Plan, make_plan
from predeploy.migrate.privileges import check_bookkeeping, check_dump
from predeploy.migrate.status import compare

if TYPE_CHECKING:
    from predeploy.backup import dump as backup
    from predeploy.commands import gates
    from predeploy.commands import runbook as runbook_mod
    from predeploy.commands.runbook import Runbook
    from predeploy.drift.report import DriftReport
    from predeploy.migrate import executor
else:  # needed only when something is pending (nothing pending must start fast)
    gates = lazy.module("predeploy.commands.gates")
    runbook_mod = lazy.module("predeploy.commands.runbook")
    backup = lazy.module("predeploy.backup.dump")
    executor = lazy.module("predeploy.migrate.executor")

__all__ = ["migrate"]

log = structlog.get_logger(__name__)


@dataclass
class _Run:
    """One migrate run's context: what it was asked, what it is allowed, what it did."""

    settings: Settings
    target: db_target.Target
    policy: Policy
    options: Options
    report: Report
    life: Lifecycle

    @property
    def step(self) -> Stepper:
        return self.life.step


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
    if settings.member is not None and settings.in_fleet:  # asks nothing, shows nothing
        options = in_fleet(options, confirmed=settings.member.confirmed)
    report = Report(env=settings.env, phase=POST_DEPLOY if options.post_deploy else PRE_DEPLOY)
    life = Lifecycle.start(settings, "migrate", run_id, steps=report.steps, on_step=on_step)
    target = db_target.of(settings)
    run = _Run(settings, target, target.env_policy, options, report, life)
    with life.ending(lambda: f"migrating ({report.failed_step or 'between steps'})"):
        _workflow(run)
    report.error = life.error
    if options.dry_run or options.rehearse:
        return report
    if report.applied or report.error:
        report.runbook = life.hand_off(lambda: _runbook(run, again))
    if report.database:
        life.protected = run.policy.protected
        detail = str(report.error) if report.error else None
        life.record(changed=bool(report.applied), detail=detail)
        if options.notify:
            report.warnings += _announce(run)
    return report


def in_fleet(options: Options, *, confirmed: bool) -> Options:
    """A fleet target's options: the fleet's confirmation stands for its own (a target
    whose database asks for one the fleet did not give is refused, never asked), its
    progress is the fleet's line, its notification the fleet's one."""
    return replace(
        options,
        yes=options.yes or confirmed,
        interactive=False,
        progress=None,
        applying=None,
        notify=False,
    )


def _runbook(run: _Run, again: list[str] | None) -> Runbook:
    report, taken = run.report, run.report.backup
    return runbook_mod.build_runbook(
        run.settings,
        backup=runbook_mod.TakenBackup(taken.path, taken.created_at) if taken else None,
        applied=report.applied,
        error=report.error,
        run_id=run.life.run_id,
        has_down={p.name: p.has_down for p in report.pending},
        again=again or _again(run.settings.env, run.options),
    )


def _again(env: str, options: Options) -> list[str]:
    """This migrate as it was asked: its flags (--yes: pasted without a terminal, a bare
    migrate in a protected env is refused)."""
    flags = ("post_deploy", "yes", "no_backup", "force_lint", "allow_drift")
    return runbook_mod.again_words("migrate", env, **{f: getattr(options, f) for f in flags})


def _announce(run: _Run) -> list[str]:
    report = run.report
    left_failed = runbook_mod.left_failed_by(report.error) is not None
    drifted = report.drift is not None and report.drift.drifted
    return run.life.announce(
        report.as_dict(),
        changed=bool(report.applied) or left_failed,
        drift=len(report.drift.differences) if report.drift is not None and drifted else 0,
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
    run.life.note("policy", policy.describe(), time.perf_counter() - started)


def _mark(run: _Run, conn: Conn) -> None:
    """A protected env's change makes the database remember it (same session, first)."""
    if run.policy.marks and not run.options.dry_run and not run.options.rehearse:
        protection.mark(
            conn, run.target.audit, env=run.settings.env, command="migrate", run_id=run.life.run_id
        )


def _options(run: _Run) -> executor.RunOptions:
    return executor.run_options(run.target, lock_retries=run.settings.lock_retries)


def _locked_workflow(run: _Run, conn: Conn) -> None:
    policy, options, report = run.policy, run.options, run.report
    found, plan = _plan(run, conn)
    if not report.pending:
        log.info("nothing_pending")
        _mark(run, conn)  # once: an up-to-date production database learns what it is
        return
    if not options.dry_run and not options.rehearse:  # before lint, drift and their shadow
        gates.refuse_without_terminal(policy, options, report.database, "migrating")
        gates.no_backup(policy, options)
    with run.step("lint"):
        report.lint = lint_migrations(run.settings, conn, list(plan.pending))
        gates.lint(policy, report.lint, force=options.force_lint or options.dry_run)
    if policy.drift_checked and not options.drift_said_skipped:
        _drift(run)
    if options.dry_run:
        if plan.stop is not None:  # the run would stop after the pending ones: say so
            report.warnings.append(plan.stop.message)
        run.life.skip("backup", "confirmation", "apply", detail="dry run")
        return
    if options.rehearse:
        _rehearse(run, conn, plan)
        return
    _apply(run, conn, found, plan)


def _plan(run: _Run, conn: Conn) -> tuple[list[migrations.Migration], Plan]:
    """The history read, the plan made (its refusals raised), the pending ones listed."""
    report = run.report
    table = run.target.history
    with run.step("history"):
        refuse_standby(conn)
        report.database = conn.info.dbname
        found = migrations.discover(run.settings.migrations_dir)
        status = compare(found, history.read_history(conn, table))
        plan = make_plan(status, run.policy, report.phase)
        report.later = [m.name for m in plan.later]
        report.warnings = list(plan.warnings)
        for warning in plan.warnings:
            log.warning("plan_warning", detail=warning, **{REPORTED: True})
        plan.refuse()
    with run.step("pending"):
        report.pending = [describe(m, with_sql=run.options.dry_run) for m in plan.pending]
    return found, plan


def _apply(run: _Run, conn: Conn, found: list[migrations.Migration], plan: Plan) -> None:
    """Privileges, backup, confirmation, blockers, then the pending migrations applied and
    the history checked again."""
    settings, policy, options, report, step = (
        run.settings,
        run.policy,
        run.options,
        run.report,
        run.step,
    )
    table, audit_table = run.target.history, run.target.audit
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
    run.life.trail.migrations.append({"name": applied.name, "seconds": round(applied.seconds, 4)})
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
        run.life.skip("backup", detail=why)
        return
    with run.step("backup"):
        taken = backup.backup(
            run.target, run.settings.backup, reason="pre-migrate", progress=run.options.progress
        )
        run.report.backup = taken
        run.life.trail.backup_path, run.life.trail.backup_sha256 = str(taken.path), taken.sha256


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
        where = " ".join(run.settings.env_words)  # a fleet's target: --target NAME too
        raise CheckFailed(
            f"{len(report.differences)} difference(s) between {report.database} and its applied "
            f"migrations (drift): review them (predeploy drift {where}), then pass "
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
        run.life.skip("confirmation", detail=who)
        return
    with run.step("confirmation"):
        gates.confirm(policy, options, run.report.database, question(policy, run.report))


def _rehearse(run: _Run, conn: Conn, plan: Plan) -> None:
    """The pending migrations in a transaction that is rolled back; exit 5 if one fails."""
    policy, options, report = run.policy, run.options, run.report
    if policy.rehearse_confirmed:
        gates.refuse_without_terminal(policy, options, report.database, "rehearsing")
        if not options.yes:
            with run.step("confirmation"):
                asked = question(policy, report, "rehearse")
                gates.confirm(policy, options, report.database, asked)
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
