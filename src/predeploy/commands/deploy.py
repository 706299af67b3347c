"""`invoke deploy`: migrate, reload the pm2 app, wait until it is healthy.

    pm2 (app found) → the migrate workflow (same gates) → pm2 reload (or restart)
    → wait for online processes and passing health checks (PREDEPLOY_DEPLOY_WAIT)

With app hosts (``[[hosts]]`` in predeploy.fleet.toml serving the env), the app step runs
on them over SSH, in waves (``commands.deploy_hosts``): every host is checked before the
database is touched, the migrations run once from here, then each wave is reloaded and
gated, then the post-deploy migrations and health on every host.

A failure stops the deploy with the failed step's exit code (the migration's, or
7 for the reload and the health checks) and a runbook that includes the pm2
commands. Nothing pending still reloads the app: the code changed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import structlog

from predeploy._util.poll import poll
from predeploy.commands import deploy_hosts, deploy_runbook, health, migrate_report
from predeploy.commands import migrate as workflow
from predeploy.commands.host_checks import check_sessions, with_local_pm2
from predeploy.commands.run import Lifecycle
from predeploy.commands.runbook import Runbook, again_words, write_runbook
from predeploy.commands.steps import OnStep, Step
from predeploy.config.hosts import Rollout, read_hosts
from predeploy.config.settings import Settings
from predeploy.db import audit
from predeploy.errors import INTERRUPTED_CODES, ConfigError, HealthCheckFailed, PredeployError
from predeploy.integrations.pm2 import Pm2, Process
from predeploy.migrate import discovery
from predeploy.migrate.discovery import POST_DEPLOY

__all__ = ["DeployReport", "deploy", "find_app", "reload_app", "wait_healthy"]

log = structlog.get_logger(__name__)
_POLL = 1.0


@dataclass
class DeployReport:
    env: str
    app: str = ""
    action: str = "reload"  # or restart (--restart)
    yes: bool = False  # --yes: the runbook's predeploy lines keep it (pasted without a terminal)
    dry_run: bool = False  # nothing is changed; post_preview: what the post phase would apply
    steps: list[Step] = field(default_factory=list)
    migrate: migrate_report.Report | None = None
    post: migrate_report.Report | None = None  # the post-deploy migrations, after the reload
    before: list[Process] = field(default_factory=list)
    after: list[Process] = field(default_factory=list)
    health: health.HealthReport | None = None
    rolling: deploy_hosts.Rolling | None = None  # the app hosts, when the env has some
    warnings: list[str] = field(default_factory=list)
    own_runbook: Runbook | None = None  # the deploy's (its phases' are theirs)
    error: PredeployError | None = None
    post_preview: list[migrate_report.Pending] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "app": self.app,
            "action": self.action,
            "dry_run": self.dry_run,
            "would_apply_post_deploy": [p.__dict__ for p in self.post_preview],
            "outcome": _outcome(self.error),
            "error": str(self.error) if self.error else None,
            "exit_code": self.error.exit_code if self.error else 0,
            "steps": [s.__dict__ for s in self.steps],
            "migrate": self.migrate.as_dict() if self.migrate else None,
            "post_deploy": self.post.as_dict() if self.post else None,
            "processes_before": [p.as_dict() for p in self.before],
            "processes_after": [p.as_dict() for p in self.after],
            "health": self.health.as_dict() if self.health else None,
            **(self._hosts() if self.rolling is not None else {}),
            "warnings": self.warnings,
            "runbook": self.own_runbook.commands if self.own_runbook else [],
            "runbook_path": _path_of(self.own_runbook),
        }

    def _hosts(self) -> dict[str, Any]:
        assert self.rolling is not None  # noqa: S101 (the caller's test)
        rollout = self.rolling.rollout
        return {
            "hosts": self.rolling.as_dicts(),
            "serial": str(rollout.serial),
            "max_fail": str(rollout.max_fail),
        }

    @property
    def runbook(self) -> Runbook | None:
        """The runbook the operator is handed: the deploy's, else its migrate phase's."""
        return self.own_runbook or (self.migrate.runbook if self.migrate else None)


def _outcome(error: PredeployError | None) -> str:
    if error is None:
        return "ok"
    return "interrupted" if error.exit_code in INTERRUPTED_CODES else "failed"


def _path_of(runbook: Runbook | None) -> str | None:
    return str(runbook.path) if runbook is not None and runbook.path is not None else None


def deploy(
    settings: Settings,
    options: migrate_report.Options,
    run_id: str,
    *,
    restart: bool = False,
    on_step: OnStep | None = None,
) -> DeployReport:
    """Run the deploy; returns the report (``error`` set when a step failed)."""
    report = DeployReport(
        env=settings.env,
        app=settings.pm2_app or "",
        action="restart" if restart else "reload",
        dry_run=options.dry_run,
        yes=options.yes,
    )
    life = Lifecycle.start(settings, "deploy", run_id, steps=report.steps, on_step=on_step)
    rollout = None if settings.in_fleet else read_hosts(settings.root, settings.env)
    if rollout is None or options.dry_run or options.rehearse:  # a trial reloads nothing
        return _run(settings, options, report, life, restart=restart, rollout=rollout)
    try:
        with deploy_hosts.one_at_a_time(settings):
            return _run(settings, options, report, life, restart=restart, rollout=rollout)
    except PredeployError as exc:  # held by another deploy, or the database is unreachable
        report.error = exc
        return report


def _run(
    settings: Settings,
    options: migrate_report.Options,
    report: DeployReport,
    life: Lifecycle,
    *,
    restart: bool,
    rollout: Rollout | None = None,
) -> DeployReport:
    """The deploy: the app found (here, or on every host), the migrations, the release."""
    pm2: Pm2 | None = None
    try:
        if rollout is not None:
            report.rolling = deploy_hosts.Rolling(with_local_pm2(settings, rollout))
            with life.step("hosts"):
                deploy_hosts.preflight(report.rolling, settings)
            report.warnings += report.rolling.warnings
            report.app = ", ".join(sorted({h.pm2_app for h in rollout.hosts}))
        else:
            with life.step("pm2"):
                pm2 = find_app(settings, report)
    except PredeployError as exc:  # nothing reached the database: no row, no notification
        report.error = exc
        return report
    again = again_words(  # its runbook's "run it again": this deploy, not a bare migrate
        "deploy", settings.env, **_flags(options), restart=restart
    )
    report.migrate = workflow.migrate(
        settings,
        dataclasses.replace(options, notify=False),
        life.run_id,
        life.on_step,
        again=again,
    )
    if report.migrate.error is not None:
        life.error = report.migrate.error
    elif options.dry_run:
        report.post_preview = _post_preview(settings, report.migrate.later)
        if report.rolling is not None:
            deploy_hosts.dry_run(report.rolling)
    elif not options.rehearse:
        with life.ending(lambda: _doing(report)):
            _release(settings, options, report, life, pm2=pm2)
    if report.rolling is not None:
        report.rolling.close()
    report.error = life.error
    _end(settings, report, life, trial=options.dry_run or options.rehearse)
    return report


def find_app(settings: Settings, report: DeployReport) -> Pm2:
    """The pm2 app to reload, with its processes before; ConfigError when it runs none."""
    pm2 = Pm2.for_settings(settings.pm2)
    report.before = pm2.processes()
    if not report.before:
        raise ConfigError(
            f"pm2 has no process named {pm2.app} ({pm2.home()}): start the app once "
            f"(pm2 start ecosystem.config.js) as that user, then deploy"
        )
    return pm2


def _release(
    settings: Settings,
    options: migrate_report.Options,
    report: DeployReport,
    life: Lifecycle,
    *,
    pm2: Pm2 | None,
) -> None:
    """Reload (or restart) the app, wait until it is healthy, then the post-deploy phase."""
    if report.rolling is not None:
        restart = report.action == "restart"
        with life.step("rollout"):
            deploy_hosts.roll(settings, report.rolling, restart=restart, on_step=life.add)
    else:
        assert pm2 is not None  # noqa: S101 (found before the migrations)
        with life.step(report.action):
            reload_app(pm2, report, report.action == "restart")
        with life.step("healthy"):
            wait_healthy(settings, pm2, report, report.action)
    _post_deploy(settings, options, report, life, pm2=pm2)


def _doing(report: DeployReport) -> str:
    """What the deploy was doing when it stopped (an interrupt's message)."""
    if report.rolling is None:
        return f"deploying ({report.action})"
    said = {
        outcome: ", ".join(names)
        for outcome in ("reloaded", "interrupted", "failed", "not reached")
        if (names := report.rolling.by_outcome(outcome))
    }
    return "rolling out over the hosts (" + "; ".join(f"{o}: {n}" for o, n in said.items()) + ")"


def _end(settings: Settings, report: DeployReport, life: Lifecycle, *, trial: bool) -> None:
    """The deploy's runbook (after a failure, or a change), then, unless it was a trial
    (dry run, rehearsal), its audit row and notification."""
    if report.error is not None or ((_changed(report) or _reloaded_hosts(report)) and not trial):
        lines = deploy_runbook.lines(settings, report)
        report.own_runbook = life.hand_off(lambda: write_runbook(settings, life.run_id, lines))
    if trial:
        return
    _trail(report, life.trail)
    life.record(detail=str(report.error) if report.error else None)
    life.protected = report.migrate.policy.get("protected") if report.migrate else None
    report.warnings += life.announce(report.as_dict(), changed=_changed(report))


def _flags(options: migrate_report.Options) -> dict[str, bool]:
    return {f: getattr(options, f) for f in ("yes", "force_lint", "allow_drift")}


def _post_deploy(
    settings: Settings,
    options: migrate_report.Options,
    report: DeployReport,
    life: Lifecycle,
    *,
    pm2: Pm2 | None,
) -> None:
    """With the new release live and healthy: its post-deploy migrations (the same gates),
    then the health checks again. A failure leaves the new release running: it works with
    both schemas, by construction."""
    on_step = life.on_step
    shown = (lambda s: on_step(dataclasses.replace(s, name=f"post: {s.name}"))) if on_step else None
    pre = report.migrate.steps if report.migrate is not None else []
    said = any(s.name == "drift" and s.outcome == "skipped" for s in pre)  # once per deploy
    post = workflow.migrate(
        settings,
        dataclasses.replace(options, notify=False, post_deploy=True, drift_said_skipped=said),
        f"{life.run_id}-post",
        shown,
    )
    report.post = post
    if post.error is not None:
        raise post.error
    if report.rolling is not None:
        with life.step("every host healthy"):
            _every_host(settings, report, report.rolling)
    elif post.applied:
        assert pm2 is not None  # noqa: S101 (a local deploy's)
        with life.step("healthy after post-deploy"):
            wait_healthy(settings, pm2, report, "post-deploy migrations", before_post=False)


def _every_host(settings: Settings, report: DeployReport, rolling: deploy_hosts.Rolling) -> None:
    """After the post-deploy phase: the database's checks, the load balancer's URL if set,
    and every host's, once."""
    checks = lambda: check_sessions(settings, rolling.sessions)  # noqa: E731
    report.health = health.run(settings, quiet=True, host_checks=checks)
    health.log_checks(report.health, failed_level="error")
    if not report.health.ok:
        raise HealthCheckFailed(
            f"after the rollout and the post-deploy phase: {report.health.summary()}"
        )


def _trail(report: DeployReport, run: audit.Run) -> None:
    """The deploy's own audit row: what it applied (the migrate row has the details), the
    backup, the health result."""
    migrated = report.migrate
    if migrated is not None:
        applied = [*migrated.applied, *(report.post.applied if report.post else [])]
        run.migrations = [{"name": a.name, "seconds": round(a.seconds, 4)} for a in applied]
        if migrated.backup is not None:
            run.backup_path, run.backup_sha256 = str(migrated.backup.path), migrated.backup.sha256
    if report.health is not None:
        run.health = {"ok": report.health.ok, "failed": [c.name for c in report.health.failed]}


def reload_app(pm2: Pm2, report: DeployReport, restart: bool) -> None:
    forked = [p for p in report.before if not p.cluster]
    if forked and not restart:
        warning = (
            f"{pm2.app} runs in fork mode: pm2 reload restarts it (requests during the restart "
            f"can fail); exec_mode 'cluster' makes reloads zero-downtime"
        )
        report.warnings.append(warning)
        log.warning("pm2_fork_mode_reload", app=pm2.app, detail=warning)
    pm2.reload(restart=restart)


def wait_healthy(
    settings: Settings,
    pm2: Pm2,
    report: DeployReport,
    action: str,
    *,
    before_post: bool = True,
    app_only: bool = False,
) -> None:
    """Poll pm2 and the health checks until all pass, for at most PREDEPLOY_DEPLOY_WAIT
    (post-deploy migrations may be pending until the post-deploy phase; ``app_only``: the
    application's checks, a fleet's databases having had theirs)."""

    def probe() -> health.HealthReport:
        report.health = health.run(
            settings, pm2=pm2, quiet=True, post_deploy_pending=before_post, app_only=app_only
        )
        return report.health

    result = poll(probe, settings.deploy_wait, pause=_POLL, done=lambda r: r.ok)
    pm2_check = next((c for c in result.checks if c.name == "pm2"), None)
    if pm2_check is not None:
        report.after = [Process(**p) for p in pm2_check.data.get("processes", [])]
    health.log_checks(result, failed_level="error")
    if not result.ok:
        raise HealthCheckFailed(
            f"{pm2.app} is not healthy {settings.deploy_wait:g}s (PREDEPLOY_DEPLOY_WAIT) after the "
            f"{action}: {result.summary()}"
        )


def _post_preview(settings: Settings, later: list[str]) -> list[migrate_report.Pending]:
    """What the post-deploy phase would apply after the reload, with its SQL (a dry run)."""
    waiting = set(later)  # its SQL's secrets are masked where the report is printed
    return [
        migrate_report.describe(m, with_sql=True)
        for m in discovery.discover(settings.migrations_dir)
        if m.name in waiting and m.phase == POST_DEPLOY
    ]


def _reloaded_hosts(report: DeployReport) -> bool:
    """Hosts run the new release: their runbook says which, and how to go back."""
    return report.rolling is not None and any(r.new_release for r in report.rolling.results)


def _changed(report: DeployReport) -> bool:
    return any(phase is not None and phase.applied for phase in (report.migrate, report.post))
