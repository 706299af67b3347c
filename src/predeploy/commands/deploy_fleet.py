"""`predeploy deploy --fleet`: the fleet's migrations around ONE reload of the app.

    pm2 (app found) → the pre-deploy migrations over the fleet (one fleet run, one
    confirmation, the fleet's caps, canaries and budget) → pm2 reload (the app is one)
    → wait healthy (pm2 and the URL: each tenant's history had its own checks) → the
    post-deploy migrations over the targets whose pre phase went well → healthy again

A pre phase the budget stopped (a canary failed, more than max_fail failed, a signal,
a refusal) stops before the reload: the release running keeps working with every
schema, by construction. Failures within the budget reload, and the deploy still ends
with their exit code. One report (a target's outcome over both phases), one runbook
(the fleet's: a section per changed target, post-deploy undo first) and one
notification; each target's audit rows (pre, post) carry the fleet's run id.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

from predeploy._util.redact import Scrubber
from predeploy.commands import deploy_hosts, deploy_runbook, fleet, migrate_report
from predeploy.commands import migrate as workflow
from predeploy.commands.deploy import DeployReport, find_app, reload_app, wait_healthy
from predeploy.commands.fleet_report import (
    APPLIED,
    FAILED,
    INTERRUPTED,
    NOT_STARTED,
    SKIPPED,
    UP_TO_DATE,
    FleetReport,
    TargetResult,
)
from predeploy.commands.health import HealthReport
from predeploy.commands.host_checks import check_sessions, with_local_pm2
from predeploy.commands.steps import OnStep, add, stepper
from predeploy.config.hosts import Rollout, read_hosts
from predeploy.config.settings import Settings
from predeploy.errors import ConfigError, PredeployError, interrupted
from predeploy.integrations.pm2 import Pm2

__all__ = ["FleetDeploy", "deploy_fleet"]

_WENT_WELL = (APPLIED, UP_TO_DATE, SKIPPED)  # skipped: done by the run this one resumes


@dataclass
class FleetDeploy:
    """The deploy of a fleet: its release (pm2, health), each phase, and the report of
    both (a target's line: what both phases applied, the first that failed)."""

    release: DeployReport
    report: FleetReport  # both phases, one result per target (what is shown and published)
    pre: FleetReport | None = None
    post: FleetReport | None = None
    error: PredeployError | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def runbook(self) -> Any:
        return self.report.runbook

    def as_dict(self) -> dict[str, Any]:
        release = self.release
        return {
            **self.report.as_dict(),
            "app": release.app,
            "action": release.action,
            "steps": [s.__dict__ for s in release.steps],
            "phases": {
                "pre_deploy": self.pre.counts() if self.pre is not None else None,
                "post_deploy": self.post.counts() if self.post is not None else None,
            },
            "health": release.health.as_dict() if release.health else None,
            **({"hosts": release.rolling.as_dicts()} if release.rolling is not None else {}),
            "warnings": [*release.warnings, *self.report.warnings],
            "error": self.error.message if self.error is not None else None,
            "exit_code": self.error.exit_code if self.error is not None else 0,
        }


def deploy_fleet(
    settings: Settings,
    options: migrate_report.Options,
    selection: fleet.Selection,
    *,
    run_id: str,
    scrubber: Scrubber,
    restart: bool = False,
    on_step: OnStep | None = None,
    on_done: fleet.OnDone | None = None,
) -> FleetDeploy:
    """Run the fleet's deploy; returns its report (``error`` set when something failed)."""
    if options.dry_run:
        raise ConfigError(
            "deploy --fleet --dry-run is not supported: predeploy status --fleet shows what "
            "each target has pending, and predeploy lint --fleet what lint says of it"
        )
    release = DeployReport(settings.env, settings.pm2_app or "", "restart" if restart else "reload")
    options = dataclasses.replace(options, notify=False)  # the fleet sends one
    rollout = read_hosts(settings.root, settings.env)
    run = functools.partial(
        _deploy,
        settings,
        options,
        selection,
        release,
        rollout=rollout,
        hooks=_Hooks(run_id, scrubber, on_step, on_done),
    )
    if rollout is None:
        return run()
    try:
        with deploy_hosts.one_at_a_time(settings):  # one deploy at a time over the hosts
            return run()
    except PredeployError as exc:
        return FleetDeploy(release, FleetReport(run_id, settings.env, "deploy", "", []), error=exc)


@dataclass(frozen=True)
class _Hooks:
    run_id: str
    scrubber: Scrubber
    on_step: OnStep | None
    on_done: fleet.OnDone | None


def _deploy(
    settings: Settings,
    options: migrate_report.Options,
    selection: fleet.Selection,
    release: DeployReport,
    *,
    rollout: Rollout | None,
    hooks: _Hooks,
) -> FleetDeploy:
    run_id, scrubber, on_step, on_done = hooks.run_id, hooks.scrubber, hooks.on_step, hooks.on_done
    step = stepper(release.steps, on_step)
    pm2: Pm2 | None = None
    try:
        if rollout is not None:  # the app runs on hosts: every one checked first
            release.rolling = deploy_hosts.Rolling(with_local_pm2(settings, rollout))
            with step("hosts"):
                deploy_hosts.preflight(release.rolling, settings)
            release.warnings += release.rolling.warnings
        else:
            with step("pm2"):
                pm2 = find_app(settings, release)
    except PredeployError as exc:  # nothing reached a database
        empty = FleetReport(run_id, settings.env, "deploy", "", [])
        return FleetDeploy(release, empty, error=exc)
    pre = fleet.run(
        settings,
        "deploy",
        lambda s: workflow.migrate(s, options, run_id),
        selection,
        run_id=run_id,
        scrubber=scrubber,
        on_done=on_done,
    )
    done = FleetDeploy(release, pre, pre=pre)
    if _reloads(pre):
        try:
            _release(settings, release, pm2, on_step)
            done.post = _post(
                settings, options, selection, pre, run_id=run_id, scrubber=scrubber, on_done=on_done
            )
            _healthy_after(settings, release, pm2, on_step, changed=bool(done.post.changed))
        except (PredeployError, KeyboardInterrupt) as exc:
            done.error = exc if isinstance(exc, PredeployError) else interrupted(exc, "deploying")
    if release.rolling is not None:
        release.rolling.close()
    _publish(settings, done, selection)
    return done


def _release(
    settings: Settings, release: DeployReport, pm2: Pm2 | None, on_step: OnStep | None
) -> None:
    """The app's reload (once here, or in waves over the hosts), and its health."""
    step = stepper(release.steps, on_step)
    restart = release.action == "restart"
    if release.rolling is not None:
        with step("rollout"):
            deploy_hosts.roll(
                settings,
                release.rolling,
                restart=restart,
                on_step=lambda s: add(release.steps, on_step, s),
            )
        return
    assert pm2 is not None  # noqa: S101 (found before the migrations)
    with step(release.action):
        reload_app(pm2, release, restart)
    with step("healthy"):
        wait_healthy(settings, pm2, release, release.action, app_only=True)


def _healthy_after(
    settings: Settings,
    release: DeployReport,
    pm2: Pm2 | None,
    on_step: OnStep | None,
    *,
    changed: bool,
) -> None:
    """After the post-deploy phase: every host's health, or this machine's app again."""
    step = stepper(release.steps, on_step)
    if release.rolling is not None:
        with step("every host healthy"):
            checks = check_sessions(settings, release.rolling.sessions)
            release.health = HealthReport(settings.env, checks)
            if release.health.error is not None:
                raise release.health.error
    elif changed:
        assert pm2 is not None  # noqa: S101 (found before the migrations)
        with step("healthy after post-deploy"):
            wait_healthy(settings, pm2, release, "post-deploy migrations", app_only=True)


def _reloads(pre: FleetReport) -> bool:
    """The pre phase ran every target and the budget took its failures (if any)."""
    left = {NOT_STARTED, INTERRUPTED}
    return pre.stopped is None and not any(t.outcome in left for t in pre.targets)


def _post(
    settings: Settings,
    options: migrate_report.Options,
    selection: fleet.Selection,
    pre: FleetReport,
    *,
    run_id: str,
    scrubber: Scrubber,
    on_done: fleet.OnDone | None,
) -> FleetReport:
    """The post-deploy migrations of the targets whose pre phase went well; asked
    nothing more (the pre phase's confirmation stands)."""
    ready = tuple(t.name for t in pre.targets if t.outcome in _WENT_WELL)
    if not ready:
        return FleetReport(run_id, settings.env, "deploy", pre.source, [])
    post_options = dataclasses.replace(options, post_deploy=True)
    return fleet.run(
        settings,
        "deploy",
        lambda s: workflow.migrate(s, post_options, f"{run_id}-post"),
        fleet.Selection(only=ready, again=selection.again),
        run_id=run_id,
        scrubber=scrubber,
        on_done=on_done,
        later=fleet.Later(confirmed=pre.confirmed),
    )


def _publish(settings: Settings, done: FleetDeploy, selection: fleet.Selection) -> None:
    """One report of both phases, its runbook and notification; the deploy's error."""
    assert done.pre is not None  # noqa: S101 (a deploy that reached its databases)
    done.report = _both(done.pre, done.post)
    done.error = done.error or done.pre.error or (done.post.error if done.post else None)
    if done.error is None and done.release.health is not None and not done.release.health.ok:
        done.error = done.release.health.error
    done.report.error = done.error  # the notification's exit code: the deploy's
    lines = deploy_runbook.fleet_lines(  # in the undo's order: post, the release, pre
        settings, done.release, (done.pre, done.post), selection.again
    )
    fleet.publish(settings, done.report, selection, lines)


def _both(pre: FleetReport, post: FleetReport | None) -> FleetReport:
    """Each target's outcome over both phases: what both applied, the post phase's
    failure after a pre phase that went well; its runbook undoes post first."""
    later = {t.name: t for t in post.targets} if post is not None else {}
    targets = [_merged(t, later.get(t.name)) for t in pre.targets]
    return dataclasses.replace(pre, targets=targets, runbook=None, warnings=list(pre.warnings))


def _merged(pre: TargetResult, post: TargetResult | None) -> TargetResult:
    if post is None:
        return pre
    both = dataclasses.replace(
        pre,
        applied=[*pre.applied, *post.applied],
        runbook=[*post.runbook, *pre.runbook],
        seconds=pre.seconds + post.seconds,
        detail={**pre.detail, "post_deploy": post.outcome},
    )
    if post.outcome in (FAILED, INTERRUPTED, NOT_STARTED):
        both.outcome, both.error, both.exit_code = post.outcome, post.error, post.exit_code
    elif post.applied:
        both.outcome = APPLIED
    return both
