"""`predeploy deploy --fleet` as the CLI shows it: a line per target and phase as it
finishes, the release's steps (pm2 reload, healthy), then the fleet's summary and runbook
(``fleet_run.render``)."""

from __future__ import annotations

import sys
import threading

from predeploy._util.log import current_run_id
from predeploy.cli import output, runs
from predeploy.cli.fleet_flags import FleetFlags
from predeploy.cli.fleet_run import line
from predeploy.cli.fleet_run import render as render_fleet
from predeploy.commands.deploy_fleet import FleetDeploy
from predeploy.commands.fleet_report import FleetReport, TargetResult
from predeploy.commands.migrate_report import Options
from predeploy.commands.steps import Step
from predeploy.config.settings import Settings

__all__ = ["render", "run"]


def run(
    settings: Settings, options: Options, flags: FleetFlags, *, restart: bool, json_output: bool
) -> FleetDeploy:
    from predeploy.commands import fleet  # noqa: PLC0415 (fleet runs only)
    from predeploy.commands.deploy_fleet import deploy_fleet  # noqa: PLC0415

    selection = fleet.Selection(
        only=flags.only,
        group=flags.group,
        fresh=flags.fresh,
        asked=runs.asked(flags.yes),
        again=flags.words,
    )
    return deploy_fleet(
        settings,
        options,
        selection,
        run_id=current_run_id(),
        scrubber=settings.scrubber,
        restart=restart,
        on_step=None if json_output else _step_line,
        on_done=None if json_output else _Lines(),
    )


def _step_line(done: Step) -> None:
    from predeploy.cli.render_run import render_step  # noqa: PLC0415 (runs only)

    print(output.mask(render_step(done)), flush=True)


class _Lines:
    """Each target's line on stdout as a phase finishes it (``pre``, then ``post``)."""

    def __init__(self) -> None:
        self.lock, self.seen = threading.Lock(), set[str]()

    def __call__(self, result: TargetResult, report: FleetReport) -> None:
        with self.lock:
            phase = "post" if result.name in self.seen else "pre "
            self.seen.add(result.name)
            print(output.mask(f"{phase} {line(result)}"), flush=True)


def _hosts(done: FleetDeploy) -> list[str]:
    """The app hosts' outcomes: one line per host."""
    rolling = done.release.rolling
    assert rolling is not None  # noqa: S101 (the caller's test)
    return [
        f"host {r.name}: {r.outcome}" + (f" ({r.detail})" if r.detail else "")
        for r in rolling.results
    ]


def render(done: FleetDeploy) -> str:
    """The release's outcome, then the fleet's summary, the targets to look at, the
    runbook."""
    release = done.release
    lines = [f"warning: {w}" for w in release.warnings]
    reloaded = any(s.name == release.action and s.outcome == "ok" for s in release.steps)
    if release.rolling is not None:
        lines += _hosts(done)
    elif not reloaded and done.pre is not None:
        lines.append(f"{release.app} was not {release.action}ed: the pre-deploy phase stopped")
    elif release.health is not None and release.health.ok:
        pids = ", ".join(str(p.pid) for p in release.after)
        lines.append(f"{release.app} {release.action}ed once and healthy (pids {pids})")
    if done.pre is None:  # the app was not found: the error says why
        return "\n".join(lines)
    if sys.stdout.isatty():
        lines.append("")
    return "\n".join([*lines, render_fleet(done.report)])
