"""`predeploy VERB --fleet`: one command over every target of the fleet file.

    the targets (file, query or command) → --only/--group → resume (the last run's
    unfinished ones) → one confirmation → the schedule (caps, groups, budget, signals)
    → one report, one runbook (a section per changed target), one notification

Each target runs the verb's own command with its own settings (``config.fleet``): its
lock, backup, lint, blocker scan, apply, checks, audit row (tagged with the fleet's run
id) and runbook section are the ones a single run would have.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import structlog

from predeploy._util.redact import Scrubber
from predeploy.commands import fleet_scan, fleet_state
from predeploy.commands.fleet_report import (
    FAILED,
    INTERRUPTED,
    REHEARSED,
    SKIPPED,
    WOULD_APPLY,
    FleetReport,
    TargetResult,
    outcome_of,
)
from predeploy.commands.fleet_schedule import Limits, schedule
from predeploy.commands.fleet_targets import Placed, place, select
from predeploy.config.fleet import Fleet, read_fleet
from predeploy.config.policy import policy_for
from predeploy.config.settings import Settings
from predeploy.errors import (
    INTERRUPTED_CODES,
    MigrationError,
    PredeployError,
    interrupted,
)

if TYPE_CHECKING:
    from predeploy.commands.gates import Asked

__all__ = ["CHANGING", "Later", "Selection", "publish", "run"]

log = structlog.get_logger(__name__)

CHANGING = frozenset({"migrate", "deploy", "rollback"})  # one confirmation for the fleet
SCANNED = frozenset({"migrate", "deploy"})  # asked only when something is pending
RESUMING = frozenset({"migrate", "deploy", "rollback"})  # run again: only what is left
OnDone = Callable[[TargetResult, FleetReport], None]
PerTarget = Callable[[Settings], Any]


@dataclass(frozen=True)
class Later:
    """A later phase of one fleet run (deploy's post-deploy migrations)."""

    confirmed: bool  # the earlier phase's confirmation stands for this one


@dataclass(frozen=True)
class Selection:
    """How the fleet run was asked for: which targets, and how to confirm."""

    only: tuple[str, ...] = ()
    group: str | None = None
    fresh: bool = False  # ignore the last run's unfinished targets: every target again
    asked: Asked | None = None  # --yes and the terminal (changing verbs)
    again: tuple[str, ...] = ()  # the words that run this fleet run again
    dry_run: bool = False  # changes nothing: nothing to confirm, nothing to resume


def run(
    settings: Settings,
    command: str,
    per_target: PerTarget,
    selection: Selection,
    *,
    run_id: str,
    scrubber: Scrubber,
    on_done: OnDone | None = None,
    later: Later | None = None,
) -> FleetReport:
    """``per_target`` (one target's settings -> the verb's result) over the fleet.
    ``later``: a later phase of a verb that runs the fleet twice (deploy: pre, reload,
    post): asks nothing, keeps no resume state, publishes nothing (the verb ``publish``es
    one runbook and one notification for both)."""
    fleet = read_fleet(settings.root)
    placed = select(place(settings, fleet, scrubber), only=selection.only, group=selection.group)
    report = FleetReport(run_id, settings.env, command, fleet.source, [_result(p) for p in placed])
    results = {r.name: r for r in report.targets}
    todo = placed if later is not None else _resume(settings, command, selection, report, placed)
    confirmed = (  # refused: nothing ran, nothing is reported
        later.confirmed
        if later is not None
        else _confirm(settings, command, selection, todo, fleet)
    )
    report.confirmed = confirmed
    todo = [replace(p, settings=_in_run(p, run_id, confirmed)) for p in todo]
    try:
        report.stopped = schedule(
            todo,
            results,
            lambda p, r: _one(p, r, command, per_target),
            _limits(fleet, command),
            None if on_done is None else lambda r: on_done(r, report),
        )
    except (PredeployError, KeyboardInterrupt) as exc:
        report.error = (
            exc if isinstance(exc, PredeployError) else interrupted(exc, "running the fleet")
        )
        if isinstance(exc, KeyboardInterrupt):
            report.stopped = report.stopped or report.error.message
    if later is not None:
        report.error = report.error or _error(report)
        return report
    _finish(settings, report, command, selection)
    return report


def _result(p: Placed) -> TargetResult:
    return TargetResult(p.name, p.member.group, p.where, p.server)


def _limits(fleet: Fleet, command: str) -> Limits:
    """The budget and the canary groups guard changes; the other verbs (status, lint,
    backup, maintenance...) run on every target whatever another's outcome."""
    gated = command in CHANGING
    groups = fleet.groups if gated else ()  # no order either: one group, no waiting
    return Limits(fleet.concurrency, fleet.per_server, fleet.max_fail, groups, gated)


def _resume(
    settings: Settings,
    command: str,
    selection: Selection,
    report: FleetReport,
    placed: list[Placed],
) -> list[Placed]:
    """The targets this run starts: every one, or (the same command run again after one
    that left some failed or not reached) only those; the others are ``skipped``."""
    if command not in RESUMING or selection.fresh or selection.dry_run:
        return placed
    last = fleet_state.unfinished(settings, command, [p.name for p in placed], selection.again)
    if last is None:
        return placed
    report.resumed_from = last.run_id
    for result in report.targets:
        if result.name not in last.left:
            result.outcome = SKIPPED
            result.error = None
            result.detail["done_in"] = last.run_id
    log.info(
        "fleet_resumed",
        run=last.run_id,
        retried=len(last.left),
        skipped=len(placed) - len(last.left),
    )
    return [p for p in placed if p.name in last.left]


def _confirm(
    settings: Settings, command: str, selection: Selection, todo: list[Placed], fleet: Fleet
) -> bool:
    """One confirmation for the whole fleet where the env's policy asks for one; a target
    whose database asks for one the fleet did not give is refused on its own."""
    policy = policy_for(settings)
    if command not in CHANGING or policy.confirmation == "none" or not todo or selection.dry_run:
        return False
    asked = selection.asked
    if asked is None:
        return False
    from predeploy.commands.confirm import require_typed  # noqa: PLC0415 (protected runs)

    found = ""
    if command in SCANNED and not asked.yes:  # the question says what will change
        counts = fleet_scan.pending_counts(todo, fleet.concurrency)
        if not any(c != 0 for c in counts.values()):
            return False  # nothing pending anywhere: nothing to confirm, as a single run
        found = f": {fleet_scan.summary(counts)}"
    groups = ", ".join(dict.fromkeys(p.member.group for p in todo))
    question = (
        f"{command} {len(todo)} target(s) of the fleet in {policy.label}, "
        f"from {fleet.source}{found}; groups in order: {groups}; at most "
        f"{fleet.concurrency} at once"
    )
    require_typed(
        settings.env,
        question,
        yes=asked.yes,
        interactive=asked.interactive,
        ask=asked.ask,
        action=f"{command} of the fleet in {settings.env}",
    )
    return True


def _in_run(p: Placed, run_id: str, confirmed: bool) -> Settings:
    """The target's settings as part of this fleet run (with its confirmation)."""
    assert p.settings.member is not None  # noqa: S101 (placed targets are members)
    member = replace(p.settings.member, confirmed=confirmed, fleet_run=run_id)
    return replace(p.settings, member=member)


def _one(p: Placed, result: TargetResult, command: str, per_target: PerTarget) -> None:
    """One target's run, as a single run of ``command`` on it; its result summarised."""
    started = time.perf_counter()
    try:
        done = per_target(p.settings)
    except PredeployError as exc:  # raised before the command had a result (its settings)
        result.outcome, result.error, result.exit_code = FAILED, exc.message, exc.exit_code
        return
    outcome, applied, error = outcome_of(done, command)
    result.outcome, result.applied = outcome, applied
    if error is not None:
        result.error, result.exit_code = p.settings.scrubber.text(error.message), error.exit_code
    if outcome in (WOULD_APPLY, REHEARSED):
        result.detail["pending"] = [p.name for p in done.pending]
    extra = getattr(done, "fleet_detail", None)  # a verb's own few fields (rolled_back, ...)
    if extra is not None:
        result.detail.update(extra())
    runbook = getattr(done, "runbook", None)
    if runbook is not None and (applied or error is not None or "rolled_back" in result.detail):
        result.runbook = list(runbook.commands)
    if outcome == INTERRUPTED and command in ("migrate", "deploy"):
        from predeploy.commands.fleet_reconcile import unreported  # noqa: PLC0415

        unreported(p.settings, done, result)
    backup = getattr(done, "backup", None)
    if backup is not None and getattr(backup, "path", None) is not None:
        result.detail["backup"] = str(backup.path)
    result.seconds = time.perf_counter() - started
    log.info("fleet_target_done", outcome=outcome, applied=len(applied), error=result.error)


def _finish(settings: Settings, report: FleetReport, command: str, selection: Selection) -> None:
    """The run's error, its state for the next run (a refused run never gets here: it
    leaves the last one's to resume), its runbook and notification."""
    if report.error is None:
        report.error = _error(report)
    if command in RESUMING and not selection.dry_run:  # a dry run leaves the last run's
        fleet_state.save(settings, command, report, selection.again)
    if command != "deploy":  # deploy publishes its two phases as one
        publish(settings, report, selection)


def publish(
    settings: Settings, report: FleetReport, selection: Selection, lines: list[str] | None = None
) -> None:
    """The runbook (a verb that changes databases; ``lines``: the verb's own, deploy's)
    and the notification of a fleet run."""
    command = report.command
    if lines is not None:
        from predeploy.commands.runbook import write_runbook  # noqa: PLC0415

        report.runbook = write_runbook(settings, report.run_id, lines)
    elif command in CHANGING and (report.changed or report.error is not None):
        from predeploy.commands.fleet_runbook import fleet_runbook  # noqa: PLC0415

        report.runbook = fleet_runbook(settings, report, selection.again)
    if command in CHANGING or command == "maintenance":  # the cron job reports as one
        report.warnings += _announce(settings, report, command)


def _error(report: FleetReport) -> PredeployError | None:
    """None when every target is done or up to date (or skipped as done before); else the
    failed targets' exit code when they agree (5 when they do not; a verb that changes
    nothing: the lowest); a finding (1: behind, drifted, lint errors) only when nothing
    failed."""
    bad = [t for t in report.targets if t.bad]
    if not bad:
        return None
    codes = {t.exit_code for t in bad if t.exit_code}
    codes = {c for c in codes if c != 1} or codes  # a failure outranks a finding (exit 1)
    counts = ", ".join(f"{n} {o}" for o, n in report.counts().items())
    names = ", ".join(t.name for t in bad if t.outcome in (FAILED, INTERRUPTED))
    message = f"fleet {report.command}: {counts}" + (f" (failed: {names[:300]})" if names else "")
    if report.stopped:
        message += f"; {report.stopped}"
    then = (
        ": see the runbook and run the same command again to retry"
        if report.command in CHANGING
        else ": see the table above"
    )
    error = MigrationError(message + then)
    interrupted_codes = codes & set(INTERRUPTED_CODES)
    if interrupted_codes:
        error.exit_code = next(iter(interrupted_codes))
    elif len(codes) == 1:
        error.exit_code = next(iter(codes))
    else:
        error.exit_code = 5 if not codes or report.command in CHANGING else min(codes)
    return error


def _announce(settings: Settings, report: FleetReport, command: str) -> list[str]:
    from predeploy.commands.announce import announce  # noqa: PLC0415 (changing runs only)

    applied = [
        {"name": f"{t.name}: {name}", "seconds": 0.0} for t in report.changed for name in t.applied
    ]
    document = {**report.as_dict(), "applied": applied}
    return announce(
        settings,
        f"{command} --fleet",
        document,
        changed=bool(applied),
        exit_code=report.error.exit_code if report.error is not None else 0,
        protected=policy_for(settings).protected,
    )
