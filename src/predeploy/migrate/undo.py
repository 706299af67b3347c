"""Undoing applied migrations: which ones (newest-applied first), and their down.sql run.

Migrations are undone newest-applied first (by the history's finished_at, not by name:
an out-of-order merge applies an older name later). Each down.sql runs through the one
executor in its own transaction, which also marks the history row rolled back (as
Prisma's resolve does), so the migration is pending again afterwards; a down.sql that
cannot run in a transaction (DROP INDEX CONCURRENTLY) runs statement by statement, and
the row is marked once all of them ran.

``choose`` refuses, before anything is undone, when a migration it would undo has an
edited or missing folder (it never undoes another one instead), when a down.sql is
missing or holds only comments, and when migrations applied after the named ones would
be left on top of the undone ones. The caller holds the migrate lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from predeploy.db.connect import Conn
from predeploy.errors import ConfigError, MigrationError
from predeploy.migrate import executor
from predeploy.migrate.discovery import Migration
from predeploy.migrate.sqlscript import Script
from predeploy.migrate.status import Entry

__all__ = ["Chosen", "choose", "undo_all"]


@dataclass(frozen=True)
class Chosen:
    """A migration to undo and its down.sql, parsed."""

    migration: Migration
    down: Script


def undo_all(
    conn: Conn,
    options: executor.RunOptions,
    chosen: list[Chosen],
    on_done: Callable[[executor.Applied], None],
) -> None:
    """Undo each of ``chosen`` in turn, telling ``on_done`` of each; the first down.sql that
    fails raises its MigrationError (a signal, its KeyboardInterrupt)."""
    with executor.Executor(conn, options) as run_scripts:
        for item in chosen:
            on_done(run_scripts.undo(item.migration, item.down))


def choose(
    entries: tuple[Entry, ...], *, steps: int | None, names: list[str] | None
) -> list[Chosen]:
    """The migrations to undo, newest-applied first; MigrationError/ConfigError if unsafe."""
    live = sorted(
        (e for e in entries if e.state in ("applied", "edited", "missing")),
        key=_applied_at,
        reverse=True,
    )
    if names is None:
        assert steps is not None  # noqa: S101 (one of the two is given)
        if len(live) < steps:
            raise ConfigError(f"only {len(live)} migration(s) are applied: cannot undo {steps}")
        return [_checked(e) for e in live[:steps]]
    return [_checked(e) for e in _named(entries, live, names)]


def _named(entries: tuple[Entry, ...], live: list[Entry], names: list[str]) -> list[Entry]:
    """The applied migrations ``names``, refused when one is not applied or when others
    applied after them would stay on top of them."""
    by_name = {e.name: e for e in live}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        state = {e.name: e.state for e in entries}
        listed = ", ".join(f"{n} ({state.get(n, 'unknown')})" for n in unknown)
        raise ConfigError(f"not applied, so nothing to undo: {listed}; see predeploy status")
    wanted = [e for e in live if e.name in set(names)]
    newest = live.index(wanted[-1])
    on_top = [e.name for e in live[:newest] if e.name not in set(names)]
    if on_top:
        raise MigrationError(
            f"{', '.join(on_top)} applied after {', '.join(names)}: undo those first (name "
            f"them too in --migrations) or undo by hand; nothing was undone"
        )
    return wanted


def _applied_at(entry: Entry) -> tuple[float, bytes]:
    finished = entry.row.finished_at if entry.row is not None else None
    return (finished.timestamp() if finished is not None else 0.0, entry.name.encode())


def _checked(entry: Entry) -> Chosen:
    """The migration and its parsed down.sql; refused when unusable."""
    if entry.state == "missing" or entry.migration is None:
        raise MigrationError(
            f"{entry.name} is applied but its folder is missing on disk: restore the folder "
            f"(git checkout) to undo it; nothing was undone"
        )
    migration = entry.migration
    if entry.state == "edited":
        raise MigrationError(
            f"{migration.sql_path} changed since {entry.name} was applied: its down.sql may "
            f"not undo what ran; restore the applied version (git checkout) first; nothing "
            f"was undone"
        )
    down = migration.down_script
    if down is None or not down.statements:
        raise MigrationError(
            f"no down.sql (or only comments) for {entry.name}: nothing was undone; restore a "
            f"backup instead (predeploy backups, predeploy restore)"
        )
    return Chosen(migration, down)
