"""What a fleet run did: one small result per target, and the run's summary.

A target's result keeps only what the report, the runbook and the next run need (its
outcome, the migrations it applied, its error line, its runbook lines when it changed
something or failed): the run's memory grows with the targets in flight, not the fleet.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from predeploy.errors import INTERRUPTED_CODES, PredeployError

if TYPE_CHECKING:
    from predeploy.commands.runbook import Runbook

__all__ = [
    "APPLIED",
    "DONE",
    "FAILED",
    "INTERRUPTED",
    "NOT_STARTED",
    "OUTCOMES",
    "SKIPPED",
    "UP_TO_DATE",
    "FleetReport",
    "TargetResult",
    "outcome_of",
]

APPLIED, UP_TO_DATE, DONE = "applied", "up to date", "done"
FAILED, SKIPPED, NOT_STARTED, INTERRUPTED = "failed", "skipped", "not started", "interrupted"
WOULD_APPLY, REHEARSED = "would apply", "rehearsed"  # migrate --dry-run, --rehearse
BEHIND, ATTENTION = "behind", "needs attention"  # a status: pending only; failed, edited...
OUTCOMES = (
    APPLIED, UP_TO_DATE, WOULD_APPLY, REHEARSED, DONE, BEHIND, ATTENTION, FAILED, SKIPPED,
    NOT_STARTED, INTERRUPTED,
)  # fmt: skip


@dataclass
class TargetResult:
    """One target's part of the run."""

    name: str
    group: str
    where: str  # database/schema (no URL, no password)
    server: str
    outcome: str = NOT_STARTED
    applied: list[str] = field(default_factory=list)
    error: str | None = None
    exit_code: int = 0
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)  # the verb's own few fields
    runbook: list[str] = field(default_factory=list)  # its section, when it changed or failed

    @property
    def bad(self) -> bool:
        """Failed, interrupted, not started, or done with an exit code (a status --check)."""
        return self.outcome in (FAILED, INTERRUPTED, NOT_STARTED) or self.exit_code != 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "where": self.where,
            "server": self.server,
            "outcome": self.outcome,
            "applied": self.applied,
            "error": self.error,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
            **self.detail,
        }


def outcome_of(result: Any, command: str) -> tuple[str, list[str], PredeployError | None]:
    """(outcome, applied names, error) of one target's command result."""
    error: PredeployError | None = getattr(result, "error", None)
    applied = [a.name for a in getattr(result, "applied", None) or []]
    own = getattr(result, "fleet_outcome", None)  # a verb's own words (status: behind, ...)
    if own is not None and (error is None or error.exit_code not in INTERRUPTED_CODES):
        return own(), applied, error
    if error is not None:
        return (INTERRUPTED if error.exit_code in INTERRUPTED_CODES else FAILED), applied, error
    if command in ("migrate", "deploy"):
        if not applied and getattr(result, "pending", None):  # a dry run or a rehearsal
            return (REHEARSED if getattr(result, "rehearsal", None) else WOULD_APPLY), [], None
        return (APPLIED if applied else UP_TO_DATE), applied, None
    return DONE, applied, None


@dataclass
class FleetReport:
    """The fleet run: its targets' results, why it stopped early, its runbook."""

    run_id: str
    env: str
    command: str
    source: str
    targets: list[TargetResult]
    resumed_from: str | None = None  # the run whose unfinished targets this one retries
    stopped: str | None = None  # why targets were left not started (budget, canary, signal)
    runbook: Runbook | None = None
    error: PredeployError | None = None
    warnings: list[str] = field(default_factory=list)
    confirmed: bool = False  # the fleet's one confirmation was given (a later phase's too)

    def counts(self) -> dict[str, int]:
        found = Counter(t.outcome for t in self.targets)
        return {o: found[o] for o in (*OUTCOMES, *found) if found[o]}  # a verb's own words too

    @property
    def changed(self) -> list[TargetResult]:
        return [t for t in self.targets if t.applied or t.detail.get("rolled_back")]

    def as_dict(self) -> dict[str, Any]:
        return {
            "fleet_run_id": self.run_id,
            "env": self.env,
            "command": self.command,
            "source": self.source,
            "resumed_from": self.resumed_from,
            "stopped": self.stopped,
            "summary": self.counts(),
            "targets": [t.as_dict() for t in self.targets],
            "runbook": self.runbook.commands if self.runbook is not None else None,
            "runbook_path": str(self.runbook.path)
            if self.runbook is not None and self.runbook.path
            else None,
            "warnings": self.warnings,
            "error": self.error.message if self.error is not None else None,
            "exit_code": self.error.exit_code if self.error is not None else 0,
        }
