"""Batches: consecutive transactional migrations sent in one pipeline, with one sync.

Each migration of a batch is still its own transaction: BEGIN, its statements, its history
row, COMMIT. They travel one after the other without waiting for each other's results, and
the only wait is the sync at the end. When one fails, the server skips everything after it
until that sync: the migrations before it stay committed with their rows, those after it
never run.

What may go into one batch (``take``): only migrations that run in a transaction and that
pglast could split; one that may change the session's settings (lock_timeout,
statement_timeout, search_path) ends its batch, so that the executor restores them before
the next one. A batch holds at most ``MOST_MIGRATIONS`` migrations and ``MOST_BYTES`` of SQL,
and about ``SECONDS`` of work at the pace of the previous one (``next_size``): the results,
the log lines and the report follow the server closely, and a client killed mid-batch leaves
the server only that much already-sent work to finish.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from predeploy.db.connect import Conn
from predeploy.db.pipeline import pipeline as interruptible
from predeploy.migrate import history
from predeploy.migrate.discovery import Migration
from predeploy.migrate.history import Table
from predeploy.migrate.sqlscript import Script

__all__ = [
    "FIRST_SIZE",
    "MOST_BYTES",
    "MOST_MIGRATIONS",
    "SECONDS",
    "Sent",
    "batchable",
    "changes_session",
    "next_size",
    "pipeline",
    "split",
    "take",
]

FIRST_SIZE = 1  # the pace is unknown at first: one migration, then at most double each time
MOST_MIGRATIONS = 200
MOST_BYTES = 1 << 20
SECONDS = 0.5
_SESSION_SETTINGS = ("lock_timeout", "statement_timeout", "search_path")

Cursor = psycopg.Cursor[tuple[Any, ...]]


def changes_session(script: Script) -> bool:
    """Whether ``script`` may change the session's limits or search_path (a plain text
    match: a false alarm only costs a round trip)."""
    text = script.text.lower()
    return any(name in text for name in _SESSION_SETTINGS)


def batchable(migration: Migration) -> bool:
    """Runs in one transaction and was split by pglast (an unsplit text needs the simple
    query protocol, which has no pipeline)."""
    script = migration.parsed
    return script.transactional and script.parse_error is None


def take(pending: Sequence[Migration], size: int) -> list[Migration]:
    """The next migrations to send together: a migration that cannot be batched alone, else
    up to ``size`` consecutive batchable ones within ``MOST_BYTES``."""
    if not pending or not batchable(pending[0]):
        return list(pending[:1])
    chosen: list[Migration] = []
    total = 0
    for migration in pending[: max(size, 1)]:
        text = migration.parsed.text
        if not batchable(migration) or (chosen and total + len(text) > MOST_BYTES):
            break
        chosen.append(migration)
        total += len(text)
        if changes_session(migration.parsed):
            break
    return chosen


def next_size(seconds: float, count: int) -> int:
    """The size of the next batch after ``count`` migrations took ``seconds``: about
    ``SECONDS`` of work at that pace, at most double the last, at least one."""
    pace = seconds / max(count, 1)
    fits = int(SECONDS / pace) if pace > 0 else MOST_MIGRATIONS
    return max(1, min(MOST_MIGRATIONS, 2 * count, fits))


@dataclass
class Sent:
    """One migration of a batch as sent: its cursors, in order (BEGIN, each statement, the
    history row, COMMIT); a cursor has a result once the server ran that part."""

    migration: Migration
    cursors: list[Cursor] = field(default_factory=list)

    @property
    def statements(self) -> list[Cursor]:
        """The cursors of the script's statements (and what was sent after them)."""
        return self.cursors[1:]

    @property
    def committed(self) -> bool:
        parts = len(self.migration.parsed.statements) + 3
        return len(self.cursors) == parts and self.cursors[-1].statusmessage == "COMMIT"

    @property
    def seconds(self) -> float:
        """How long it ran on the server (its history row says), once committed."""
        row = self.cursors[-2].fetchone()
        return float(row[0]) if row is not None else 0.0


def split(sent: list[Sent]) -> tuple[list[Sent], list[Sent]]:
    """The committed prefix of ``sent`` (the server runs them in order) and the rest."""
    committed = list(itertools.takewhile(lambda s: s.committed, sent))
    return committed, sent[len(committed) :]


def pipeline(conn: Conn, table: Table, batch: Sequence[Migration], sent: list[Sent]) -> None:
    """Send every migration of ``batch`` and wait for the sync, filling ``sent`` as it goes
    (so that the caller knows what was sent when this raises)."""
    with interruptible(conn):
        for migration in batch:
            item = Sent(migration)
            sent.append(item)
            item.cursors.append(conn.execute("BEGIN"))
            for statement in migration.parsed.statements:
                item.cursors.append(conn.execute(statement.text, prepare=False))
            item.cursors.append(history.insert_applied_now(conn, table, migration))
            item.cursors.append(conn.execute("COMMIT"))
