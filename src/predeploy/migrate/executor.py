"""The one executor: apply, rehearse and rollback run every script through it.

A script that can run in a transaction runs in one, with its bookkeeping (the history
row) in the same transaction: BEGIN, its statements, the row, COMMIT, sent in one
pipeline (one round trip). A script that cannot (CONCURRENTLY, its own BEGIN/COMMIT)
runs statement by statement behind a row that stays failed if it stops part-way.

Every statement runs under the migration limits (lock_timeout, statement_timeout). A
lock timeout rolls the script back; the sessions that held locks on its tables from
before the try are then watched, and the next try starts as soon as they are gone (or
after a growing pause when none is found). While they stay, trying again could only
stall the application once more, so a pause that ends with them still there counts as a
try without touching the table. When the tries run out the error names them.

Errors carry the migration, the file, the SQLSTATE and line:column (one mapper, ``_failure``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

import psycopg
import structlog
from psycopg import errors as pg_errors

from predeploy.errors import MigrationError
from predeploy.migrate import blockers, history
from predeploy.migrate.discovery import Migration
from predeploy.migrate.history import Table
from predeploy.migrate.sqlscript import Script, Statement, position_to_line_column
from predeploy.postgres.failures import message_of
from predeploy.postgres.sessions import CATALOG, Conn, Limits, use_limits

__all__ = [
    "Applied",
    "Executor",
    "MigrationFailed",
    "Rehearsed",
    "RunOptions",
    "backoff",
]

log = structlog.get_logger(__name__)
_FIRST_PAUSE, _LAST_PAUSE = 0.5, 10.0
_POLL = 0.1  # how often a lock-timed-out migration looks whether its holders are gone
_SESSION_SETTINGS = ("lock_timeout", "statement_timeout", "search_path")


@dataclass(frozen=True)
class RunOptions:
    """How scripts run: the history table, the session's limits, the lock-timeout retries."""

    table: Table
    limits: Limits
    lock_retries: int
    search_path: str | None = None  # the session's own (Prisma's ?schema=), restored after
    quiet: bool = False  # a shadow build: each migration logged at debug level only


@dataclass(frozen=True)
class Applied:
    """A script that ran to its end: which migration, how long, in a transaction, tries."""

    name: str
    seconds: float
    transactional: bool
    attempts: int


@dataclass(frozen=True)
class Rehearsed:
    """One migration of a rehearsal: ok (with its time), failed (with why), or not rehearsed."""

    name: str
    outcome: str
    seconds: float | None = None
    sqlstate: str | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class MigrationFailed(MigrationError):
    """A script's SQL failed: which migration and file, where, and what the server said."""

    def __init__(
        self,
        name: str,
        message: str,
        *,
        file: str = "migration.sql",
        sqlstate: str | None = None,
        line: int | None = None,
        column: int | None = None,
        left_failed: bool = False,
        then: str | None = None,
    ) -> None:
        where = f" at line {line}, column {column} of {file}" if line else ""
        code = f" [{sqlstate}]" if sqlstate else ""
        what = f"rollback of {name}" if file == "down.sql" else f"migration {name}"
        if then is None:
            then = (
                f"it stopped part-way and is recorded as failed: check the database, then "
                f"`predeploy resolve --rolled-back {name}` (or --applied) before migrating again"
                if left_failed
                else "it was rolled back: fix the SQL and run again"
            )
        super().__init__(f"{what} failed{where}{code}: {message}; {then}")
        self.name, self.file, self.sqlstate = name, file, sqlstate
        self.line, self.column, self.detail, self.left_failed = line, column, message, left_failed


@dataclass(frozen=True)
class _Unit:
    name: str
    file: str  # migration.sql or down.sql
    script: Script
    tables: frozenset[str]


def backoff(attempt: int) -> float:
    """Pause before retry ``attempt`` (1-based): 0.5 s doubling up to 10 s."""
    return min(_FIRST_PAUSE * 2.0 ** (attempt - 1), _LAST_PAUSE)


class Executor:
    """Runs scripts on ``conn`` (an autocommit session) under the migration limits.

    Use it as a context manager: the session has the migration limits inside, the
    catalogue limits again after.
    """

    def __init__(self, conn: Conn, options: RunOptions) -> None:
        self.conn, self.options = conn, options

    def __enter__(self) -> Executor:
        self._restore_session()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.conn.closed or self.conn.broken:
            return
        if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.conn.execute("ROLLBACK")
        use_limits(self.conn, CATALOG, search_path=self.options.search_path)

    # --- the three verbs ---------------------------------------------------------------

    def apply(self, migration: Migration) -> Applied:
        """Apply ``migration`` and record it in the history table."""
        unit = _unit(migration.name, "migration.sql", migration.parsed)
        if unit.script.parse_error:
            log.warning("sql_not_parsed", migration=unit.name, detail=unit.script.parse_error)
        started = time.perf_counter()
        table = self.options.table
        if unit.script.transactional:
            stamp = datetime.now(UTC)
            attempts = self._transaction(
                unit, lambda: history.insert_applied(self.conn, table, migration, stamp)
            )
        else:
            log.info(
                "migration_outside_transaction", migration=unit.name, reason=unit.script.reason
            )
            attempts = self._statements(unit, migration)
        return self._done(unit, started, attempts, "migration_applied")

    def undo(self, migration: Migration, script: Script) -> Applied:
        """Run ``script`` (the down.sql of ``migration``) and mark the migration rolled back:
        in the same transaction, or (DROP INDEX CONCURRENTLY...) after every statement ran."""
        unit = _unit(migration.name, "down.sql", script)
        started = time.perf_counter()
        table = self.options.table
        if not script.transactional:
            log.info("rollback_outside_transaction", migration=unit.name, reason=script.reason)
            attempts = self._undo_statements(unit)
        else:
            attempts = self._transaction(
                unit, lambda: history.mark_undone(self.conn, table, migration.name)
            )
        return self._done(unit, started, attempts, "migration_rolled_back")

    def rehearse(self, migrations: list[Migration]) -> list[Rehearsed]:
        """Each migration in turn inside one transaction that is rolled back at the end.

        Stops at the first failure (later migrations may depend on it: they are listed as
        not rehearsed); migrations that cannot run in a transaction are not rehearsed.
        """
        results: list[Rehearsed] = []
        failed: str | None = None
        self.conn.execute("BEGIN")
        try:
            for migration in migrations:
                unit = _unit(migration.name, "migration.sql", migration.parsed)
                reason = unit.script.reason if failed is None else f"{failed} failed before it"
                if failed is not None or not unit.script.transactional:
                    results.append(Rehearsed(unit.name, "not rehearsed", detail=reason))
                    continue
                started = time.perf_counter()
                try:  # no lock-timeout retries: earlier rehearsed changes still hold their locks
                    self._transaction(unit, lambda: None, savepoint=True, retry=False)
                except MigrationError as exc:  # its SQL failed, or its locks were not granted
                    cause = exc if isinstance(exc, MigrationFailed) else exc.__cause__
                    sqlstate = getattr(cause, "sqlstate", None)
                    results.append(
                        Rehearsed(unit.name, "failed", sqlstate=sqlstate, detail=str(exc))
                    )
                    failed = unit.name
                    continue
                seconds = round(time.perf_counter() - started, 4)
                results.append(Rehearsed(unit.name, "ok", seconds=seconds))
        finally:
            if not self.conn.broken:
                self.conn.execute("ROLLBACK")
        log.info("rehearsal_done", results=len(results))
        return results

    # --- the machinery -----------------------------------------------------------------

    def _done(self, unit: _Unit, started: float, attempts: int, event: str) -> Applied:
        if any(name in unit.script.text.lower() for name in _SESSION_SETTINGS):
            self._restore_session()  # the script may have changed them for the session
        seconds = time.perf_counter() - started
        (log.debug if self.options.quiet else log.info)(
            event,
            migration=unit.name,
            seconds=round(seconds, 4),
            transactional=unit.script.transactional,
            attempts=attempts,
        )
        return Applied(unit.name, seconds, unit.script.transactional, attempts)

    def _restore_session(self) -> None:
        use_limits(self.conn, self.options.limits, search_path=self.options.search_path)
        if self.options.search_path is None:  # a script's own SET search_path outlives it
            self.conn.execute("RESET search_path")

    def _transaction(
        self,
        unit: _Unit,
        record: Callable[[], None],
        *,
        savepoint: bool = False,
        retry: bool = True,
    ) -> int:
        """One transaction (or savepoint): the statements, then ``record``; returns tries.

        They travel in one pipeline; the statement that failed is the first without a
        result, so its line is known even when the server gives no position.
        """
        conn, attempt = self.conn, 1
        begin, end = (
            ("SAVEPOINT predeploy", "RELEASE SAVEPOINT predeploy")
            if savepoint
            else ("BEGIN", "COMMIT")
        )
        while True:
            cursors: list[psycopg.Cursor[tuple[object, ...]]] = []
            try:
                if unit.script.parse_error:  # one unsplit text: only the simple protocol runs it
                    conn.execute(begin)
                    cursors.append(conn.execute(unit.script.text, prepare=False))
                    record()
                    conn.execute(end)
                else:
                    with conn.pipeline():
                        conn.execute(begin)
                        cursors.extend(
                            conn.execute(st.text, prepare=False) for st in unit.script.statements
                        )
                        record()
                        conn.execute(end)
                return attempt
            except psycopg.Error as exc:
                self._abandon(savepoint)
                if not isinstance(exc, pg_errors.LockNotAvailable):
                    raise self._failure(
                        unit, _first_unfinished(unit.script, cursors), exc
                    ) from None
                attempt = self._next_try(
                    unit, attempt=attempt, exc=exc, retries=None if retry else 0
                )

    def _abandon(self, savepoint: bool) -> None:
        status = self.conn.info.transaction_status
        if status == psycopg.pq.TransactionStatus.IDLE or self.conn.broken:
            return
        self.conn.execute("ROLLBACK TO SAVEPOINT predeploy" if savepoint else "ROLLBACK")

    def _statements(self, unit: _Unit, migration: Migration) -> int:
        """Run statement by statement in autocommit; the row stays failed unless all succeed.

        A lock timeout retries from the statement that timed out, or from the script's
        own BEGIN when it struck inside one (that transaction was lost).
        """
        conn, table = self.conn, self.options.table
        row_id = history.insert_started(conn, table, migration)
        done, attempt, block_start, index = 0, 1, None, 0
        statements = unit.script.statements
        while index < len(statements):
            statement = statements[index]
            try:
                self._execute(statement)
            except pg_errors.LockNotAvailable as exc:
                if block_start is not None:  # the script's own transaction was lost with it
                    conn.execute("ROLLBACK")
                    index, block_start = block_start, None
                attempt = self._next_try(unit, attempt=attempt, exc=exc, row_id=row_id)
                continue
            except psycopg.Error as exc:
                failure = self._failure(unit, statement, exc, left_failed=True)
                if conn.broken:  # nothing more can be recorded: the row stays failed
                    raise failure from None
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")
                history.record_failure(conn, table, row_id, failure.message, done)
                raise failure from None
            if statement.kind == "TransactionStmt":
                status = conn.info.transaction_status
                block_start = index if status == psycopg.pq.TransactionStatus.INTRANS else None
            done += 1
            index += 1
        history.finish(conn, table, row_id, steps=1)
        return attempt

    def _undo_statements(self, unit: _Unit) -> int:
        """A down.sql that cannot run in a transaction, statement by statement; the migration
        is marked rolled back once all ran, and stays applied if one fails."""
        conn, statements = self.conn, unit.script.statements
        attempt, block_start, index = 1, None, 0
        while index < len(statements):
            try:
                self._execute(statements[index])
            except pg_errors.LockNotAvailable as exc:
                if block_start is not None:  # the script's own transaction was lost with it
                    conn.execute("ROLLBACK")
                    index, block_start = block_start, None
                attempt = self._next_try(unit, attempt=attempt, exc=exc)
                continue
            except psycopg.Error as exc:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")
                then = (
                    f"{index} of its {len(statements)} statement(s) ran before it and "
                    f"{unit.name} is still recorded as applied: fix down.sql (IF EXISTS makes "
                    f"it safe to run again), then roll back again"
                )
                raise self._failure(unit, statements[index], exc, then=then) from None
            if statements[index].kind == "TransactionStmt":
                in_block = conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
                block_start = index if in_block else None
            index += 1
        history.mark_undone(conn, self.options.table, unit.name)
        return attempt

    def _execute(self, statement: Statement) -> None:
        if statement.concurrent:
            # A CONCURRENTLY build's waits block no reads or writes, and a lock timeout would
            # leave an INVALID index behind: let it wait, bounded by statement_timeout only.
            self.conn.execute("SET lock_timeout = 0")
            try:
                self.conn.execute(statement.text, prepare=False)
            finally:
                self._restore_session()
            return
        self.conn.execute(statement.text, prepare=False)

    def _next_try(
        self,
        unit: _Unit,
        *,
        attempt: int,
        exc: psycopg.Error,
        row_id: str | None = None,
        retries: int | None = None,
    ) -> int:
        """After try ``attempt`` hit the lock timeout: wait, then return the next try's number.

        Gives up (MigrationError, naming who held the locks) after ``retries`` (default
        PREDEPLOY_LOCK_RETRIES).
        """
        conn, options = self.conn, self.options
        lock_timeout = options.limits.lock_timeout
        limit = options.lock_retries if retries is None else retries
        # the sessions that held its tables since before the try (older than the lock
        # timeout) or that sit idle in a transaction: the blocker scan's definition
        holders: list[str] = []
        if attempt > limit:  # no retries (a rehearsal): name them all the same
            holders = [blockers.describe(b) for b in blockers.scan(conn, unit.tables, lock_timeout)]
        while attempt <= limit:
            pause = backoff(attempt)
            holders = [blockers.describe(b) for b in blockers.scan(conn, unit.tables, lock_timeout)]
            log.warning(
                "lock_timeout_retry",
                migration=unit.name,
                attempt=attempt,
                pause_s=pause,
                blockers=holders or None,
            )
            if not holders:
                time.sleep(pause)
                return attempt + 1
            if not blockers.wait_until_gone(conn, unit.tables, lock_timeout, pause, pause=_POLL):
                return attempt + 1
            attempt += 1  # still there: trying now would only stall the application again
            log.info("lock_retry_skipped", migration=unit.name, attempt=attempt)
        who = "; ".join(holders) if holders else "a session that finished before it could be named"
        message = (
            f"{unit.file} of {unit.name} could not get its locks within PREDEPLOY_LOCK_TIMEOUT "
            f"({lock_timeout:g}s) in {attempt} tries; blocked by {who}: retry when it "
            f"ends, or end it (SELECT pg_terminate_backend(pid)); nothing was changed"
        )
        if row_id is not None:
            history.record_failure(conn, options.table, row_id, message, 0)
        raise MigrationError(message) from exc

    def _failure(
        self,
        unit: _Unit,
        statement: Statement | None,
        exc: psycopg.Error,
        *,
        left_failed: bool = False,
        then: str | None = None,
    ) -> MigrationError:
        """The error with its place in the file: the server's position, else the statement's."""
        if self.conn.broken:  # the connection, not the SQL: libpq's text has several lines
            return _connection_lost(unit, exc, left_failed=left_failed)
        diag = exc.diag
        message = (diag.message_primary or str(exc)).strip()
        if diag.message_detail:  # one line: a deadlock's has a line per process
            message += f" (DETAIL: {' '.join(diag.message_detail.split())})"
        if statement is None:  # every statement ran: the bookkeeping failed
            return MigrationError(
                f"{unit.file} of {unit.name} ran, but recording it in {self.options.table} "
                f"failed [{diag.sqlstate}]: {message}; it was rolled back"
            )
        position = int(diag.statement_position or 1)
        line, column = position_to_line_column(unit.script.text, statement.offset + position)
        if then is None and isinstance(exc, pg_errors.DeadlockDetected) and not left_failed:
            then = "it was rolled back: another session's locks crossed its own; run it again"
        if (
            then is None
            and statement.concurrent
            and statement.kind == "IndexStmt"
            and statement.index_name
        ):
            name = statement.index_name
            then = (
                f"an INVALID index {name} may be left behind: remove it with "
                f"DROP INDEX CONCURRENTLY IF EXISTS {name}; then `predeploy resolve "
                f"--rolled-back {unit.name}`, fix the SQL and migrate again"
            )
        return MigrationFailed(
            unit.name,
            message,
            file=unit.file,
            sqlstate=diag.sqlstate,
            line=line,
            column=column,
            left_failed=left_failed,
            then=then,
        )


def _connection_lost(unit: _Unit, exc: psycopg.Error, *, left_failed: bool) -> MigrationError:
    """The session died while ``unit`` ran: say so, and what to check (never "fix the SQL")."""
    then = (
        f"it is recorded as failed: check what it changed, then `predeploy resolve "
        f"--rolled-back {unit.name}` (or --applied)"
        if left_failed
        else "see `predeploy status`: unless it shows as applied, none of it was kept"
    )
    return MigrationError(
        f"the database connection was lost while {unit.file} of {unit.name} ran: "
        f"{message_of(exc)}; {then}"
    )


def _unit(name: str, file: str, script: Script) -> _Unit:
    tables = frozenset(t for st in script.statements for t in st.tables)
    return _Unit(name, file, script, tables)


def _first_unfinished(
    script: Script, cursors: list[psycopg.Cursor[tuple[object, ...]]]
) -> Statement | None:
    """The first statement without a result; None when all ran (the bookkeeping failed)."""
    if script.parse_error:
        return script.statements[0] if script.statements else None
    for index, statement in enumerate(script.statements):
        if index >= len(cursors) or cursors[index].statusmessage is None:
            return statement
    return None
