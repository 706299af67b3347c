"""The fleet run's one runbook: a section per target that changed something or failed
(its own runbook, every predeploy line aimed at it with ``--target``), then how to retry
what was left."""

from __future__ import annotations

from predeploy._util.pasted import command
from predeploy.commands.fleet_report import FAILED, INTERRUPTED, NOT_STARTED, FleetReport
from predeploy.commands.runbook import Runbook, write_runbook
from predeploy.config.settings import Settings

__all__ = ["fleet_runbook"]


def fleet_runbook(settings: Settings, report: FleetReport, again: tuple[str, ...]) -> Runbook:
    """Written to <log dir>/runbook-<env>-<fleet run id>.txt, as a single run's is."""
    lines = [
        f"# fleet run {report.run_id}: {report.command} in {report.env} over "
        f"{len(report.targets)} target(s) from {report.source}"
    ]
    sections = [t for t in report.targets if t.runbook]
    if not report.changed:
        lines.append("# this run changed no target: there is nothing to undo")
    for target in sections:
        did = f"applied {', '.join(target.applied)}" if target.applied else target.outcome
        lines += ["", f"# == {target.name} ({target.where}): {did} ==", *target.runbook]
    left = [t for t in report.targets if t.outcome in (FAILED, INTERRUPTED, NOT_STARTED)]
    if left and again:
        names = ", ".join(t.name for t in left[:20]) + (" ..." if len(left) > 20 else "")
        lines += [
            "",
            f"# {len(left)} target(s) left failed, interrupted or not started ({names}):",
            "# once the cause is dealt with, the same command retries only those:",
            command(*again),
        ]
    return write_runbook(settings, report.run_id, lines)
