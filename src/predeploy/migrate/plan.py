"""The plan of a run: what is pending, what stands in the way, what only deserves a warning.

Pure: computed from the status (disk against history) and the env's policy, once under
the migrate lock. The same rules decide before applying and after it, so a run can never
warn, apply, and then fail its own post-apply check on the same finding.

- a failed migration refuses the run (resolve it first);
- an applied migration whose file changed refuses it where the policy says so, else warns;
- a migration recorded in the database but missing on disk warns, everywhere;
- a pending migration with no statements (``predeploy new``'s template, an empty file)
  refuses the run in every env: applied, it would be burnt, and the SQL written later
  would never run;
- a run applies the pending migrations of its phase (pre-deploy, the default, or
  post-deploy) in name order, and refuses when a pending migration of the other phase sorts
  before one of them: the order of the history is kept, never reshuffled.
"""

from __future__ import annotations

from dataclasses import dataclass

from predeploy.config.policy import Policy
from predeploy.errors import MigrationError
from predeploy.migrate.discovery import POST_DEPLOY, PRE_DEPLOY, Migration
from predeploy.migrate.status import Entry, Status

__all__ = ["OutOfPhase", "Plan", "make_plan"]


@dataclass(frozen=True)
class Plan:
    """What a run will apply, and why it may not."""

    status: Status
    pending: tuple[Migration, ...]  # this run's phase
    warnings: tuple[str, ...]
    refusals: tuple[MigrationError, ...]
    phase: str = PRE_DEPLOY
    later: tuple[Migration, ...] = ()  # pending, but not in this run (other phase, or behind one)
    stop: OutOfPhase | None = None  # raised once ``pending`` is applied: the rest must wait

    def refuse(self) -> None:
        """Raise the first refusal, if any (all of them are in the message)."""
        if not self.refusals:
            return
        if len(self.refusals) == 1:
            raise self.refusals[0]
        raise MigrationError("; ".join(r.message for r in self.refusals))


def make_plan(status: Status, policy: Policy, phase: str = PRE_DEPLOY) -> Plan:
    """The plan of a ``phase`` run for ``status`` under ``policy``."""
    refusals, warnings = _history_findings(status, policy)
    every = list(status.pending)
    pending = tuple(m for m in every if m.phase == phase)
    later = tuple(m for m in every if m.phase != phase)
    stop: OutOfPhase | None = None
    if pending and later and later[0].name.encode() < pending[-1].name.encode():
        # name order is kept: this phase's migrations before the other phase's first one
        # run, then the run stops; with none before it, nothing runs
        ahead = tuple(m for m in pending if m.name.encode() < later[0].name.encode())
        stop = _out_of_phase(phase, pending, later, ahead)
        if not ahead:
            refusals.append(stop)
            stop = None
        pending, later = ahead, tuple(m for m in every if m not in ahead)
    empty = [m for m in pending if not m.parsed.statements]
    if empty:
        refusals.append(
            MigrationError(
                f"{', '.join(str(m.sql_path) for m in empty)} has no SQL statements: write the "
                f"migration or remove the folder; nothing was applied"
            )
        )
    return Plan(status, pending, tuple(warnings), tuple(refusals), phase, later, stop)


def _history_findings(status: Status, policy: Policy) -> tuple[list[MigrationError], list[str]]:
    """What the history says against a run: failed migrations and (where the policy says
    so) edited ones refuse it; edited ones elsewhere and missing folders are warnings."""
    refusals: list[MigrationError] = []
    warnings: list[str] = []
    failed = status.having("failed")
    if failed:
        first = failed[0].name
        refusals.append(
            MigrationError(
                f"failed migration(s) block migrate: {', '.join(e.name for e in failed)}. Check "
                f"what it changed, then `predeploy resolve --rolled-back {first}` to run it "
                f"again, or `predeploy resolve --applied {first}` if you completed it by hand"
            )
        )
    for entry in status.having("edited"):
        detail = _edited(entry)
        if policy.edited_blocks:
            refusals.append(
                MigrationError(
                    f"{detail}: restore the applied version (git checkout) and put the change "
                    f"in a new migration (predeploy new NAME)"
                )
            )
        else:
            warnings.append(detail)
    warnings += [
        f"{e.name} is recorded in the database but its folder is missing on disk"
        for e in status.having("missing")
    ]
    return refusals, warnings


class OutOfPhase(MigrationError):
    """A migration of the other phase is pending before some of this phase's."""


def _out_of_phase(
    phase: str,
    pending: tuple[Migration, ...],
    later: tuple[Migration, ...],
    ahead: tuple[Migration, ...],
) -> OutOfPhase:
    blocker = later[0]
    behind = [m.name for m in pending if m.name.encode() > blocker.name.encode()]
    if phase == PRE_DEPLOY:
        how = (
            f"once the release that needs what ran is live, run predeploy migrate "
            f"--{POST_DEPLOY} (predeploy deploy runs it after the reload), then migrate again"
        )
    else:
        how = f"run predeploy migrate (the {PRE_DEPLOY} ones) first, then this again"
    done = (
        f"applied {', '.join(m.name for m in ahead)} and stopped there"
        if ahead
        else "nothing was applied"
    )
    error = OutOfPhase(
        f"{blocker.phase} migration {blocker.name} is pending before {phase} migration(s) "
        f"{', '.join(behind)}: migrations run in name order, so {how}; {done}"
    )
    if ahead:  # the run applies these, then stops by design: not a failure
        error.stopped_before = f"the {blocker.phase} phase"
    return error


def _edited(entry: Entry) -> str:
    assert entry.migration is not None and entry.row is not None  # noqa: S101 (edited)
    return (
        f"{entry.migration.sql_path} changed after it was applied (file sha256 "
        f"{entry.migration.checksum[:12]}…, recorded {entry.row.checksum[:12]}…)"
    )
