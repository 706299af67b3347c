"""Where each migration stands: files on disk against rows in the history table (pure).

Also the one rule of "is the history clean", named per reader: ``for_check`` (`status
--check`: anything not applied needs attention, a folder missing on disk included) and
``for_health`` (the health check: a folder missing on disk only warns, as in the plan,
and a deploy between its reload and its post-deploy phase may wait on post-deploy ones).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

from predeploy.migrate.discovery import Migration
from predeploy.migrate.history import HistoryRow

__all__ = ["STATES", "Entry", "State", "Status", "compare", "for_check", "for_health"]

State = Literal["applied", "pending", "failed", "edited", "missing"]
STATES: tuple[State, ...] = ("applied", "pending", "failed", "edited", "missing")


@dataclass(frozen=True)
class Entry:
    """One migration's state; ``migration`` is None for rows with no folder on disk."""

    name: str
    state: State
    migration: Migration | None
    row: HistoryRow | None

    def as_dict(self) -> dict[str, Any]:
        row = self.row
        data: dict[str, Any] = {"name": self.name, "state": self.state}
        if self.migration is not None:
            data["phase"] = self.migration.phase
        if row is not None:
            data["started_at"] = row.started_at.isoformat()
            data["finished_at"] = row.finished_at.isoformat() if row.finished_at else None
        if self.state == "edited" and self.migration is not None and row is not None:
            data["checksum_recorded"] = row.checksum
            data["checksum_file"] = self.migration.checksum
        if self.state == "failed" and row is not None:
            data["logs"] = row.logs
        return data


@dataclass(frozen=True)
class Status:
    """Every migration on disk or in the history, in order."""

    entries: tuple[Entry, ...]

    def having(self, state: State) -> list[Entry]:
        return [e for e in self.entries if e.state == state]

    @property
    def pending(self) -> list[Migration]:
        return [e.migration for e in self.having("pending") if e.migration is not None]

    @property
    def up_to_date(self) -> bool:
        return all(e.state == "applied" for e in self.entries)

    def counts(self) -> dict[str, int]:
        return {state: len(self.having(state)) for state in STATES}


def for_check(status: Status) -> dict[State, int]:
    """What `status --check` calls a problem: every state but applied, with its count."""
    return _unclean(status, warn_only=())


def for_health(status: Status, *, waiting: tuple[Migration, ...] = ()) -> dict[State, int]:
    """What the health check calls a problem: pending (but ``waiting``), failed, edited;
    a migration missing on disk is a warning, as in the plan (the run that applied past it
    succeeded)."""
    return _unclean(status, warn_only=("missing",), waiting=waiting)


def _unclean(
    status: Status, *, warn_only: tuple[State, ...], waiting: tuple[Migration, ...] = ()
) -> dict[State, int]:
    counts = {state: len(status.having(state)) for state in STATES}
    counts["pending"] -= len([m for m in status.pending if m in waiting])
    return {s: n for s, n in counts.items() if n and s != "applied" and s not in warn_only}


def compare(migrations: list[Migration], rows: list[HistoryRow]) -> Status:
    """The state of every migration, by Prisma's rules.

    A failed row (finished_at and rolled_back_at null) makes the migration failed;
    otherwise its latest applied row makes it applied, or edited when the file's
    checksum no longer matches; a migration whose rows are all rolled back is
    pending again. Rows whose folder is gone are reported as missing.
    """
    by_name: dict[str, list[HistoryRow]] = defaultdict(list)
    for row in rows:
        by_name[row.migration_name].append(row)
    entries = [_entry(m, by_name.pop(m.name, [])) for m in migrations]
    for name, named_rows in by_name.items():
        live = [r for r in named_rows if r.applied or r.failed]
        if live:
            entries.append(Entry(name=name, state="missing", migration=None, row=live[-1]))
    return Status(entries=tuple(entries))


def _entry(migration: Migration, rows: list[HistoryRow]) -> Entry:
    failed = [r for r in rows if r.failed]
    if failed:
        return Entry(migration.name, "failed", migration, failed[-1])
    applied = [r for r in rows if r.applied]
    if not applied:
        return Entry(migration.name, "pending", migration, None)
    last = applied[-1]
    state: State = "applied" if migration.matches(last.checksum) else "edited"
    return Entry(migration.name, state, migration, last)
