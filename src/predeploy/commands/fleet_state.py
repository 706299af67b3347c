"""What a fleet run left unfinished, for the next run of the same command to resume.

Kept under the log folder (``fleet-<env>-<command>.json``): the run id, what was asked
(the command's words, the migrations' names and checksums) and each target's outcome.
The same command run again, with the same migrations, retries only the targets the last
run left failed, interrupted or not started (and targets new to the fleet); anything else
(another command line, a migration added or edited, ``--fresh``) starts a fresh run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from predeploy._util.atomic import write_json
from predeploy.commands.fleet_report import FAILED, INTERRUPTED, NOT_STARTED
from predeploy.config.settings import Settings
from predeploy.migrate import discovery

if TYPE_CHECKING:
    from predeploy.commands.fleet_report import FleetReport

__all__ = ["Last", "save", "unfinished"]

log = structlog.get_logger(__name__)

_LEFT = frozenset({FAILED, INTERRUPTED, NOT_STARTED})
_MANNER = frozenset({"--json", "--yes", "-y"})  # how a run reports or confirms, not what it does


@dataclass(frozen=True)
class Last:
    """The last run, as far as this one resumes it."""

    run_id: str
    left: frozenset[str]  # the targets to retry


def unfinished(
    settings: Settings, command: str, names: list[str], asked: tuple[str, ...]
) -> Last | None:
    """The last run of this command when it left some of ``names`` to do; else None."""
    try:
        kept = json.loads(_path(settings, command).read_text(encoding="utf-8"))
        run_id, outcomes = str(kept["run_id"]), dict(kept["targets"])
        same = kept["asked"] == _asked(settings, asked)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none, or unreadable: a fresh run (it costs a history read a target)
    if not same or not any(o in _LEFT for o in outcomes.values()):
        return None  # another command, or the last run finished: a fresh run
    return Last(run_id, frozenset(n for n in names if outcomes.get(n, NOT_STARTED) in _LEFT))


def save(settings: Settings, command: str, report: FleetReport, asked: tuple[str, ...]) -> None:
    """This run's outcomes (a target it skipped as done keeps its done outcome)."""
    try:
        previous = json.loads(_path(settings, command).read_text(encoding="utf-8"))["targets"]
    except (OSError, ValueError, KeyError, TypeError):
        previous = {}
    outcomes = {
        t.name: (previous.get(t.name, "up to date") if t.outcome == "skipped" else t.outcome)
        for t in report.targets
    }
    document = {"run_id": report.run_id, "asked": _asked(settings, asked), "targets": outcomes}
    with contextlib.suppress(OSError):  # resuming is a convenience: the run's own rows stay
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        write_json(_path(settings, command), document)


def _path(settings: Settings, command: str) -> Path:
    return settings.log_dir / f"fleet-{settings.env}-{command}.json"


def _asked(settings: Settings, asked: tuple[str, ...]) -> str:
    """What makes two runs "the same command": its words (not those that only change how
    it reports or confirms: --json, --yes) and the migrations on disk."""
    words = [w for w in asked if w not in _MANNER]
    digest = hashlib.sha256("\0".join(words).encode())
    with contextlib.suppress(OSError):
        for migration in discovery.discover(settings.migrations_dir):
            digest.update(f"\0{migration.name}\0{migration.checksum}".encode())
    return digest.hexdigest()
