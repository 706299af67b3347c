"""The runbook of a deploy: what it changed (both phases, and the release), how to undo it.

Every command line runs when pasted: predeploy as ``_util.pasted.command`` names it, pm2 as
``pm2.pasted`` does (the program this run used, by absolute path, with its PM2_HOME).
What it says follows where the deploy stopped:

- before the reload (a migration failed, a gate refused): the release was not reloaded;
  the pre-deploy phase's own runbook;
- while ``pm2 reload`` ran (a signal, a failure, a timeout): the reload may have happened,
  in part or whole; how to see what runs (``pm2 describe``), then how to go back;
- after the reload: the app is not healthy, or a post-deploy migration failed (the
  release works with the schema as it is), listing what both phases applied;
- a deploy that applied migrations and ended well: the undo of both phases, in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from predeploy._util.pasted import command
from predeploy.commands import runbook
from predeploy.commands.deploy_hosts import FAILED
from predeploy.commands.deploy_hosts_runbook import revert_lines, state_lines
from predeploy.commands.runbook import again_words, restore_lines, undo_lines
from predeploy.config.settings import Settings
from predeploy.errors import INTERRUPTED_CODES
from predeploy.integrations.pm2 import pasted

if TYPE_CHECKING:
    from predeploy.commands.deploy import DeployReport
    from predeploy.commands.deploy_hosts import Rolling
    from predeploy.commands.fleet_report import FleetReport
    from predeploy.commands.migrate_report import Report

__all__ = ["fleet_lines", "lines"]


def lines(settings: Settings, report: DeployReport) -> list[str]:
    """The runbook's lines for ``report`` (a deploy that failed, or applied something)."""
    app, post = report.app, report.post
    if post is not None and post.error is not None:
        return _post_failed(settings, report, post)
    if report.rolling is not None:
        return _over_hosts(settings, report, report.rolling)
    reload = next((s for s in report.steps if s.name in ("reload", "restart")), None)
    if reload is None:
        return [
            f"# {app} was not reloaded: pm2 still runs the release it ran before this deploy",
            *_own(report.migrate),
        ]
    if reload.outcome != "ok":
        return _in_flight(settings, report, reload.name, reload.outcome)
    if report.error is None:
        return _undo_deploy(settings, report)
    interrupted = report.error.exit_code in INTERRUPTED_CODES
    return [
        f"# {app} was {reload.name}ed; this deploy was interrupted before it was found healthy"
        if interrupted
        else f"# {app} is not healthy after this deploy",
        "# its recent logs:",
        pasted(settings.pm2, "logs", app, "--lines", "100", "--nostream"),
        *_revert(settings, report),
        *_own(report.migrate),
        *_own(post),
        *_check(settings),
    ]


def _over_hosts(settings: Settings, report: DeployReport, rolling: Rolling) -> list[str]:
    """A deploy over app hosts: every host's state, then the way back (or the undo)."""
    if not any(r.new_release or r.outcome == FAILED for r in rolling.results):
        return [
            "# no host was reloaded: every host still runs the release it ran before this deploy",
            *_own(report.migrate),
        ]
    if report.error is None:
        return [*state_lines(rolling), *_undo_deploy(settings, report)]
    again = again_words("deploy", settings.env, yes=report.yes)
    later = report.migrate.later if report.migrate is not None else []
    waiting = (
        [
            f"# the post-deploy migrations were not applied ({', '.join(later)}): they wait until "
            f"every host runs the new release and is healthy"
        ]
        if later and report.post is None
        else []
    )
    return [
        *state_lines(rolling),
        *waiting,
        *_revert(settings, report),
        *_own(report.migrate),
        "# once the cause is dealt with, deploy again (it reloads every host):",
        command(*again),
    ]


def fleet_lines(
    settings: Settings,
    release: DeployReport,
    phases: tuple[FleetReport, FleetReport | None],
    again: tuple[str, ...],
) -> list[str]:
    """A fleet's deploy, in the order it is undone: every target's post-deploy section
    (the new release works without them), the release (back to the previous one), then
    every target's pre-deploy section; then how to retry what was left."""
    pre, post = phases
    head = (
        f"# fleet run {pre.run_id}: deploy in {pre.env} over {len(pre.targets)} target(s) "
        f"from {pre.source}"
    )
    changed = any(t.applied for phase in phases if phase is not None for t in phase.targets)
    found = [
        *([] if changed else ["# this deploy changed no target's database"]),
        *_sections(post, "after the reload (post-deploy)"),
        *_release(settings, release),
        *_sections(pre, "before the reload (pre-deploy)"),
    ]
    left = [t.name for phase in phases if phase is not None for t in phase.targets if t.bad]
    if left and again:
        found += [
            "",
            f"# left failed, interrupted or not started: {', '.join(dict.fromkeys(left[:20]))}",
            "# once the cause is dealt with, the same command retries only those:",
            command(*again),
        ]
    return [head, *found]


def _sections(phase: FleetReport | None, when: str) -> list[str]:
    found: list[str] = []
    for t in phase.targets if phase is not None else []:
        if t.runbook:
            did = f"applied {', '.join(t.applied)}" if t.applied else t.outcome
            found += ["", f"# == {t.name} ({t.where}), {when}: {did} ==", *t.runbook]
    return found


def _release(settings: Settings, release: DeployReport) -> list[str]:
    """What became of the app: not reloaded, a reload in flight, unhealthy, or reloaded."""
    app = release.app
    if release.rolling is not None:
        return [
            "",
            *state_lines(release.rolling),
            "# to go back: undo the post-deploy sections above first, then the release, then the",
            "# pre-deploy sections below",
            *revert_lines(release.rolling, settings.env),
        ]
    reload = next((s for s in release.steps if s.name in ("reload", "restart")), None)
    if reload is None:
        return ["", f"# {app} was not reloaded: pm2 still runs the release it ran before"]
    if reload.outcome != "ok":
        return [
            "",
            f"# pm2 {reload.name} {app} did not finish: see what runs now:",
            pasted(settings.pm2, "describe", app),
            *_revert(settings, release),
            *_check(settings),
        ]
    healthy = release.health is not None and release.health.ok
    return [
        "",
        f"# {app} was {reload.name}ed once for the whole fleet"
        + ("" if healthy else " and is not healthy; its recent logs:"),
        *([] if healthy else [pasted(settings.pm2, "logs", app, "--lines", "100", "--nostream")]),
        "# to go back: undo the post-deploy sections above first, then the release, then the",
        "# pre-deploy sections below",
        *_revert(settings, release),
    ]


def _post_failed(settings: Settings, report: DeployReport, post: Report) -> list[str]:
    """The release is live and healthy; the post-deploy phase failed. What each phase did."""
    env, app = settings.env, report.app
    stopped = "was interrupted" if _interrupted(post) else "failed"
    lines = [
        f"# the new release of {app} is live and healthy; a post-deploy migration {stopped},",
        "# and the release works with the schema as it is (that is what post-deploy means):",
        *runbook.part_way_lines(env, post.error, _has_down(post)),
    ]
    if post.applied:
        lines.append(
            f"# after the reload, this deploy applied {len(post.applied)} post-deploy "
            f"migration(s) before it stopped: {_names(post)}"
        )
        lines += undo_lines(env, _newest_first(post), _has_down(post), "undo those")
    elif runbook.left_failed_by(post.error) is None:
        lines.append("# the post-deploy phase changed nothing in the database")
    lines += [
        "# once the cause (the error line) is dealt with, apply the post-deploy migrations:",
        command("migrate", "--env", env, "--post-deploy", *(["--yes"] if report.yes else [])),
    ]
    pre = report.migrate
    if pre is not None and pre.applied:
        lines += [
            f"# before the reload, this deploy applied {len(pre.applied)} pre-deploy "
            f"migration(s): {_names(pre)}",
            "# the live release needs them: to undo them, first go back to the previous release:",
            *_revert(settings, report),
            *undo_lines(env, _newest_first(pre), _has_down(pre), "then undo those"),
        ]
    left_failed = runbook.left_failed_by(post.error)
    if not (post.applied or (pre is not None and pre.applied) or left_failed):
        return lines  # nothing changed: no restore to suggest
    return lines + restore_lines(settings, _first_backup(report), "this deploy")


def _in_flight(settings: Settings, report: DeployReport, action: str, outcome: str) -> list[str]:
    """``pm2 reload`` was stopped or failed: pm2's daemon may have done it, or part of it."""
    app = report.app
    why = "this deploy was interrupted" if outcome == "interrupted" else "it failed"
    return [
        f"# pm2 {action} {app} was in flight when {why}: pm2 may have {action}ed {app}",
        "# (all, some or none of its processes may run the new release); see what runs now:",
        pasted(settings.pm2, "describe", app),
        *_revert(settings, report),
        *_own(report.migrate),
        *_check(settings),
    ]


def _undo_deploy(settings: Settings, report: DeployReport) -> list[str]:
    """A deploy that went well: its post-deploy migrations are undone first (the new release
    works without them), then the release goes back, then its pre-deploy ones."""
    env, pre, post = settings.env, report.migrate, report.post
    lines: list[str] = []
    if pre is not None and pre.applied:
        lines.append(
            f"# before the reload, this deploy applied {len(pre.applied)} pre-deploy "
            f"migration(s): {_names(pre)}"
        )
    if post is not None and post.applied:
        lines.append(
            f"# after the reload, it applied {len(post.applied)} post-deploy migration(s): "
            f"{_names(post)}"
        )
        lines += undo_lines(env, _newest_first(post), _has_down(post), "undo those first")
    lines += _revert(settings, report)
    if pre is not None and pre.applied:
        lines += undo_lines(env, _newest_first(pre), _has_down(pre), "then undo the pre-deploy")
    return lines + restore_lines(settings, _first_backup(report), "this deploy")


def _interrupted(phase: Report) -> bool:
    return phase.error is not None and phase.error.exit_code in INTERRUPTED_CODES


def _revert(settings: Settings, report: DeployReport) -> list[str]:
    """How to put the previous release back: on the app hosts, or with this machine's pm2."""
    if report.rolling is not None:
        return revert_lines(report.rolling, settings.env)
    app = report.app
    return [
        "# put the previous release of the code back (with pm2's deploy section:",
        "#   pm2 deploy ecosystem.config.js production revert 1), then reload it:",
        pasted(settings.pm2, "reload", app),
    ]


def _check(settings: Settings) -> list[str]:
    return ["# then check:", runbook.pm2_command(settings, "health", "--env", settings.env)]


def _own(phase: Report | None) -> list[str]:
    return phase.runbook.commands if phase is not None and phase.runbook is not None else []


def _names(phase: Report) -> str:
    return ", ".join(a.name for a in phase.applied)


def _newest_first(phase: Report) -> list[str]:
    return [a.name for a in reversed(phase.applied)]


def _has_down(phase: Report) -> dict[str, bool]:
    return {p.name: p.has_down for p in phase.pending}


def _first_backup(report: DeployReport) -> runbook.TakenBackup | None:
    """The backup taken before the first change this deploy made."""
    for phase in (report.migrate, report.post):
        if phase is not None and phase.backup is not None:
            return runbook.TakenBackup(phase.backup.path, phase.backup.created_at)
    return None
