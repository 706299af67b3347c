"""A fleet run as the CLI shows it: a line per target as it finishes (and, on a terminal,
the fleet's progress line), then the summary, the targets that need a look, the runbook.
``--target NAME``: the settings of one target, for any verb."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from predeploy._util.log import current_run_id
from predeploy.cli import output, runs
from predeploy.cli.fleet_flags import FleetFlags
from predeploy.cli.progress import CLEAR, fit
from predeploy.commands.fleet import Selection
from predeploy.commands.fleet_report import FleetReport, TargetResult
from predeploy.config.settings import Settings

__all__ = ["render", "run", "target_settings"]

# the fleet's outcomes, then the verbs' own words (commands' fleet_outcome)
_MARK = {"applied": "✓", "up to date": "=", "done": "✓", "skipped": "-", "failed": "✗",
         "interrupted": "!", "not started": "·", "behind": "…", "needs attention": "!",
         "would apply": "→", "rehearsed": "✓",
         "clean": "✓", "warnings": "~", "lint errors": "✗", "no drift": "✓", "drifted": "✗",
         "reachable": "✓", "healthy": "✓", "unhealthy": "✗", "rolled back": "✓",
         "not applied": "-", "backed up": "✓"}  # fmt: skip


def run(
    settings: Settings, command: Callable[[Settings], Any], flags: FleetFlags, json_output: bool
) -> FleetReport:
    from predeploy.commands import fleet  # noqa: PLC0415 (fleet runs only)

    assert flags.task is not None  # noqa: S101 (--fleet comes with its task)
    selection = Selection(
        only=flags.only,
        group=flags.group,
        fresh=flags.fresh,
        asked=runs.asked(flags.yes),
        again=flags.words,
        dry_run=flags.dry_run,
    )
    shown = None if json_output else _Lines(sys.stderr.isatty() and output.current().verbosity == 0)
    return fleet.run(
        settings,
        flags.task,
        command,
        selection,
        run_id=current_run_id(),
        scrubber=settings.scrubber,
        on_done=shown,
    )


class _Lines:
    """Each target's line on stdout as it finishes; the fleet's progress on a terminal."""

    def __init__(self, progress: bool) -> None:
        self.progress, self.done, self.lock = progress, 0, threading.Lock()

    def __call__(self, result: TargetResult, report: FleetReport) -> None:
        with self.lock:
            self.done += 1
            if self.progress:
                sys.stderr.write(CLEAR)
            print(output.mask(line(result)), flush=True)
            if self.progress:
                failed = sum(t.outcome == "failed" for t in report.targets)
                total = sum(t.outcome != "skipped" for t in report.targets)  # a resume's
                text = fit(f"fleet: {self.done}/{total} finished, {failed} failed")
                sys.stderr.write(text + "\r")
                sys.stderr.flush()


def line(result: TargetResult) -> str:
    """``✓ acme (tenant_acme/acme): applied 2 (0.41s)``."""
    what = result.outcome
    changed = result.applied or result.detail.get("rolled_back") or []
    changed = changed or result.detail.get("pending") or []
    if changed:
        broke = result.outcome in ("failed", "interrupted") and result.applied
        verb = f"{result.outcome} after applying" if broke else result.outcome
        what = f"{verb} {len(changed)}: {_names(changed)}"
    if result.error:
        what += f": {result.error}"
    took = f" ({result.seconds:.2f}s)" if result.seconds else ""
    return f"{_MARK.get(result.outcome, '?')} {result.name} ({result.where}): {what}{took}"


def _names(applied: list[str]) -> str:
    return ", ".join(applied[-3:]) if len(applied) <= 3 else f"..., {', '.join(applied[-3:])}"


def render(report: FleetReport) -> str:
    """The end of a fleet run: its counts, what needs a look, the runbook."""
    if sys.stderr.isatty():
        sys.stderr.write(CLEAR)
    counts = ", ".join(f"{n} {o}" for o, n in report.counts().items()) or "no target"
    lines = [f"fleet run {report.run_id}: {report.command} in {report.env}, "
             f"{len(report.targets)} target(s) from {report.source}: {counts}"]  # fmt: skip
    if report.resumed_from:
        skipped = sum(t.outcome == "skipped" for t in report.targets)
        lines.append(
            f"resumed run {report.resumed_from}: {skipped} target(s) done there were skipped"
        )
    lines += _table(report)
    if report.stopped:
        lines.append(f"stopped: {report.stopped}")
    lines += [f"warning: {w}" for w in report.warnings]
    if report.runbook is not None:
        saved = f" (saved to {report.runbook.path})" if report.runbook.path else ""
        lines += ["", f"Runbook{saved}:", *report.runbook.commands]
    return "\n".join(lines)


def _table(report: FleetReport) -> list[str]:
    """One row per target: every one for a status (the question is the table), else the
    ones that need a look (the others had their line as they finished)."""
    rows = report.targets
    if report.command != "status":
        rows = [t for t in rows if t.outcome in ("failed", "interrupted", "not started")]
    if not rows:
        return []
    width = max(len(t.name) for t in rows)
    return ["", *(f"  {t.name:<{width}}  {_cell(t)}" for t in rows)]


def _cell(result: TargetResult) -> str:
    if "counts" in result.detail:
        counts = ", ".join(f"{n} {s}" for s, n in result.detail["counts"].items() if n)
        text = f"{result.outcome:<15} {counts}"
    else:
        text = result.outcome
    if result.applied and result.outcome != "applied":  # what it changed before it stopped
        text += f" after applying {_names(result.applied)}"
    return text + (f": {result.error}" if result.error else "")


def target_settings(settings: Settings, name: str) -> Settings:
    """The settings of target ``name`` of the fleet file (as the fleet run gives it)."""
    from predeploy.commands.fleet_targets import place, select  # noqa: PLC0415
    from predeploy.config.fleet import read_fleet  # noqa: PLC0415

    fleet = read_fleet(settings.root)
    placed = select(place(settings, fleet, settings.scrubber), only=(name,), flag="--target")
    return placed[0].settings
