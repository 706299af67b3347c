"""Applying migrations: each in its own transaction with its history row, or, when it
cannot run in one, statement by statement with a row that stays failed if it stops.

Every session runs with lock_timeout and statement_timeout, so the application's
queries never queue behind a migration's lock request for longer than PREDEPLOY_LOCK_TIMEOUT.
A lock timeout rolls the migration back; the sessions that held locks on its tables
from before the try are then watched, and the next try starts as soon as they are
gone (or after a growing pause when none is found). While they stay, trying again
could only stall the application once more, so a pause that ends with them still
there counts as a try without touching the table. When the tries run out the error
names them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import structlog
from psycopg import errors as pg_errors
from psycopg.conninfo import make_conninfo

from predeploy.errors import MigrationError
from predeploy.migrate import blockers as blockers_mod
from predeploy.migrate import history
from predeploy.migrate.discovery import Migration
from predeploy.migrate.sqlscript import Script, Statement, position_to_line_column
from predeploy.postgres.sessions import Conn

__all__ = ["Applied", "MigrationFailed", "RunOptions", "apply", "backoff", "configure_session"]

log = structlog.get_logger(__name__)
_FIRST_PAUSE, _LAST_PAUSE = 0.5, 10.0
_TIMEOUT_SETTINGS = ("lock_timeout", "statement_timeout")

_POLL = 0.1  # how often a lock-timed-out migration looks whether its holders are gone

_BLOCKERS = """
SELECT pid, coalesce(state, '?'), extract(epoch FROM now() - coalesce(xact_start, query_start)),
       left(regexp_replace(query, '\\s+', ' ', 'g'), 120), usename, application_name
FROM pg_stat_activity WHERE pid = ANY(pg_blocking_pids(%s))
"""


@dataclass(frozen=True)
class RunOptions:
    """How migrations run: the history table and the session's limits."""

    table: str
    lock_timeout: float
    statement_timeout: float
    lock_retries: int


@dataclass(frozen=True)
class Applied:
    """A migration that was applied, how long it took and how many tries."""

    name: str
    seconds: float
    transactional: bool
    attempts: int


class MigrationFailed(MigrationError):
    """A migration's SQL failed: where, and what the server said."""

    def __init__(
        self,
        name: str,
        message: str,
        *,
        sqlstate: str | None = None,
        line: int | None = None,
        column: int | None = None,
        left_failed: bool = False,
    ) -> None:
        where = f" at line {line}, column {column} of migration.sql" if line else ""
        code = f" [{sqlstate}]" if sqlstate else ""
        then = (
            f"; it stopped part-way and is recorded as failed: check the database, then "
            f"`invoke resolve --rolled-back {name}` (or --applied) before migrating again"
            if left_failed
            else "; it was rolled back: fix migration.sql and run migrate again"
        )
        super().__init__(f"migration {name} failed{where}{code}: {message}{then}")
        self.name, self.sqlstate, self.line, self.column = name, sqlstate, line, column
        self.detail, self.left_failed = message, left_failed


def backoff(attempt: int) -> float:
    """Pause before retry ``attempt`` (1-based): 0.5 s doubling up to 10 s."""
    return min(_FIRST_PAUSE * 2.0 ** (attempt - 1), _LAST_PAUSE)


def configure_session(conn: Conn, options: RunOptions) -> None:
    """Set lock_timeout and statement_timeout for the session (0 = none)."""
    for name, seconds in zip(
        _TIMEOUT_SETTINGS, (options.lock_timeout, options.statement_timeout), strict=True
    ):
        conn.execute("SELECT set_config(%s, %s, false)", (name, f"{round(seconds * 1000)}ms"))


def apply(conn: Conn, migration: Migration, options: RunOptions) -> Applied:
    """Apply one migration on ``conn`` (an autocommit connection) and record it."""
    text = migration.text
    script = migration.parsed
    if script.parse_error:
        log.warning("sql_not_parsed", migration=migration.name, detail=script.parse_error)
    started = time.perf_counter()
    if script.transactional:
        attempts = _apply_in_transaction(conn, migration, script, options)
    else:
        log.info("migration_outside_transaction", migration=migration.name, reason=script.reason)
        attempts = _apply_statements(conn, migration, script, options)
    if any(name in text.lower() for name in _TIMEOUT_SETTINGS):
        configure_session(conn, options)  # the script may have changed them for the session
    seconds = time.perf_counter() - started
    log.info(
        "migration_applied",
        migration=migration.name,
        seconds=round(seconds, 4),
        transactional=script.transactional,
        attempts=attempts,
    )
    return Applied(migration.name, seconds, script.transactional, attempts)


def _apply_in_transaction(
    conn: Conn,
    migration: Migration,
    script: Script,
    options: RunOptions,
) -> int:
    """One transaction: BEGIN, the statements one by one, the history row, COMMIT.

    They travel in one pipeline (one round trip); the statement that failed is the
    first without a result, so its line is known even when the server gives no position.
    """
    attempt = 1
    while True:
        cursors: list[psycopg.Cursor[tuple[object, ...]]] = []
        try:
            with _watch_blockers(conn, watching=attempt > 1) as blockers:
                _send_transaction(conn, migration, script, options, cursors)
            return attempt
        except psycopg.Error as exc:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            if not isinstance(exc, pg_errors.LockNotAvailable):
                failed = next(
                    (
                        st
                        for st, cur in zip(script.statements, cursors, strict=False)
                        if cur.statusmessage is None
                    ),
                    script.statements[-1] if script.statements else None,
                )
                raise _failure(
                    migration.name, script.text, failed, exc, left_failed=False
                ) from None
            attempt = _next_try(
                conn, migration, options, attempt=attempt, blockers=blockers, exc=exc
            )


def _send_transaction(
    conn: Conn,
    migration: Migration,
    script: Script,
    options: RunOptions,
    cursors: list[psycopg.Cursor[tuple[object, ...]]],
) -> None:
    started_at = datetime.now(UTC)
    if script.parse_error:  # one unsplit text: only the simple protocol runs it whole
        with conn.transaction():
            cursors.append(conn.execute(script.text, prepare=False))
            history.insert_applied(conn, options.table, migration, started_at)
        return
    with conn.pipeline():
        conn.execute("BEGIN")
        cursors.extend(conn.execute(st.text, prepare=False) for st in script.statements)
        history.insert_applied(conn, options.table, migration, started_at)
        conn.execute("COMMIT")


def _apply_statements(
    conn: Conn,
    migration: Migration,
    script: Script,
    options: RunOptions,
) -> int:
    """Run statement by statement in autocommit; the row stays failed unless all succeed.

    A lock timeout retries from the statement that timed out, or from the
    script's own BEGIN when it struck inside one (that transaction was lost).
    """
    row_id = history.insert_started(conn, options.table, migration)
    done, attempt, block_start = 0, 1, None
    statements = script.statements
    index = 0
    while index < len(statements):
        statement = statements[index]
        try:
            with _watch_blockers(conn, watching=attempt > 1) as blockers:
                _execute(conn, statement, options)
        except pg_errors.LockNotAvailable as exc:
            if block_start is not None:  # the script's own transaction was lost with it
                conn.execute("ROLLBACK")
                index, block_start = block_start, None
            attempt = _next_try(
                conn,
                migration,
                options,
                attempt=attempt,
                blockers=blockers,
                exc=exc,
                row_id=row_id,
            )
            continue
        except psycopg.Error as exc:
            failure = _failure(migration.name, script.text, statement, exc, left_failed=True)
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            history.record_failure(conn, options.table, row_id, failure.message, done)
            raise failure from None
        if statement.kind == "TransactionStmt":
            status = conn.info.transaction_status
            block_start = index if status == psycopg.pq.TransactionStatus.INTRANS else None
        done += 1
        index += 1
    history.finish(conn, options.table, row_id, steps=1)
    return attempt


def _execute(conn: Conn, statement: Statement, options: RunOptions) -> None:
    if statement.concurrent:
        # A CONCURRENTLY build's waits block no reads or writes, and a lock timeout would
        # leave an INVALID index behind: let it wait, bounded by statement_timeout only.
        conn.execute("SET lock_timeout = 0")
        try:
            conn.execute(statement.text, prepare=False)
        finally:
            configure_session(conn, options)
        return
    conn.execute(statement.text, prepare=False)


def _next_try(
    conn: Conn,
    migration: Migration,
    options: RunOptions,
    *,
    attempt: int,
    blockers: list[str],
    exc: psycopg.Error,
    row_id: str | None = None,
) -> int:
    """After try ``attempt`` hit the lock timeout: wait, then return the number of the next try.

    Gives up (MigrationError, naming who held the locks) after PREDEPLOY_LOCK_RETRIES retries.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")
    # the sessions that held its tables since before the try (older than PREDEPLOY_LOCK_TIMEOUT)
    # or that sit idle in a transaction: the blocker scan's definition
    tables = blockers_mod.tables_of([migration])
    holders: list[str] = []
    while attempt <= options.lock_retries:
        pause = backoff(attempt)
        holders = _named(blockers_mod.scan(conn, tables, options.lock_timeout))
        log.warning(
            "lock_timeout_retry",
            migration=migration.name,
            attempt=attempt,
            pause_s=pause,
            blockers=holders or blockers or None,
        )
        if not holders:
            time.sleep(pause)
            return attempt + 1
        if not blockers_mod.wait_until_gone(conn, tables, options.lock_timeout, pause, pause=_POLL):
            return attempt + 1
        attempt += 1  # still there: trying now would only stall the application again
        log.info("lock_retry_skipped", migration=migration.name, attempt=attempt)
    named = holders or blockers
    who = "; ".join(named) if named else "a session that finished before it could be named"
    message = (
        f"migration {migration.name} could not get its locks within PREDEPLOY_LOCK_TIMEOUT "
        f"({options.lock_timeout:g}s) in {attempt} tries; blocked by {who}: retry when it "
        f"ends, or end it (SELECT pg_terminate_backend(pid))"
    )
    if row_id is not None:
        history.record_failure(conn, options.table, row_id, message, 0)
    raise MigrationError(message) from exc


def _named(found: list[blockers_mod.Blocker]) -> list[str]:
    return [
        _describe_blocker((b.pid, b.state, b.age_s, b.query, b.user, b.application)) for b in found
    ]


@contextmanager
def _watch_blockers(conn: Conn, *, watching: bool) -> Iterator[list[str]]:
    """While the block runs, note every session that blocks ``conn`` (on retries only)."""
    seen: list[str] = []
    if not watching:
        yield seen
        return
    stop = threading.Event()
    conninfo = make_conninfo(conn.info.dsn, password=conn.info.password or None)
    pid = conn.info.backend_pid

    def watch() -> None:
        try:
            with psycopg.connect(conninfo, autocommit=True) as spy:
                while not stop.wait(0.1):
                    rows = spy.execute(_BLOCKERS, (pid,)).fetchall()
                    if rows:
                        seen[:] = [_describe_blocker(row) for row in rows]
        except psycopg.Error:
            return  # naming the blocker is a courtesy; the run's own error still stands

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=2)


def _describe_blocker(row: tuple[object, ...]) -> str:
    pid, state, seconds, query, user, application = row
    return (
        f"pid {pid} ({state} for {float(str(seconds or 0)):.0f}s, user {user}, "
        f"application {application or '(none)'}, query: {query})"
    )


def _failure(
    name: str, text: str, statement: Statement | None, exc: psycopg.Error, *, left_failed: bool
) -> MigrationFailed:
    """The error with its place in migration.sql: the server's position, else the statement's."""
    diag = exc.diag
    message = (diag.message_primary or str(exc)).strip()
    line = column = None
    if statement is not None:
        position = int(diag.statement_position or 1)
        line, column = position_to_line_column(text, statement.offset + position)
    return MigrationFailed(
        name, message, sqlstate=diag.sqlstate, line=line, column=column, left_failed=left_failed
    )
