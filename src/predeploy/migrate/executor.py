"""The one executor: apply, rehearse and rollback run every script through it.

A script that can run in a transaction runs in one, with its bookkeeping (the history
row) in the same transaction: BEGIN, its statements, the row, COMMIT, sent in one
pipeline (one round trip). ``apply_all`` sends runs of such migrations in batches, one
sync for many, each still its own transaction (see ``batch``). A script that cannot
(CONCURRENTLY, its own BEGIN/COMMIT) runs statement by statement behind a row that stays
failed if it stops part-way.

Every statement runs under the migration limits (lock_timeout, statement_timeout). A
lock timeout rolls the script back; the sessions that held locks on its tables from
before the try are then watched, and the next try starts as soon as they are gone (or
after a growing pause when none is found). While they stay, trying again could only
stall the application once more, so a pause that ends with them still there counts as a
try without touching the table. When the tries run out the error names them.

Errors carry the migration, the file, the SQLSTATE and line:column (one mapper:
``outcome.failure``).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING

import psycopg
import structlog
from psycopg import errors as pg_errors
from psycopg import sql

from predeploy._util import poll
from predeploy._util.log import REPORTED
from predeploy.db.connect import CATALOG, Conn, use_limits
from predeploy.errors import MigrationError, StoppedPartWay, Terminated
from predeploy.migrate import batch, blockers, history
from predeploy.migrate.discovery import Migration
from predeploy.migrate.outcome import (
    Applied,
    MigrationFailed,
    Rehearsed,
    RunOptions,
    Unit,
    failure,
    first_unfinished,
    owner_of,
    unit_of,
)
from predeploy.migrate.sqlscript import Script, Statement

if TYPE_CHECKING:
    from predeploy.db.target import Target

__all__ = [
    "Applied",
    "Executor",
    "MigrationFailed",
    "Rehearsed",
    "RunOptions",
    "backoff",
    "run_options",
]

log = structlog.get_logger(__name__)
_FIRST_PAUSE, _LAST_PAUSE = 0.5, 10.0
_POLL = 0.1  # how often a lock-timed-out migration looks whether its holders are gone


def run_options(target: Target, *, lock_retries: int) -> RunOptions:
    """The executor's options on ``target``: history table, migration limits, retries
    (PREDEPLOY_LOCK_RETRIES)."""
    return RunOptions(
        table=target.history,
        limits=target.limits,
        lock_retries=lock_retries,
        search_path=target.search_path,
    )


def backoff(attempt: int) -> float:
    """Pause before retry ``attempt`` (1-based): 0.5 s doubling up to 10 s."""
    return poll.backoff(attempt, _FIRST_PAUSE, _LAST_PAUSE)


class Executor:
    """Runs scripts on ``conn`` (an autocommit session) under the migration limits.

    Use it as a context manager: the session has the migration limits inside, the
    catalogue limits again after.
    """

    def __init__(self, conn: Conn, options: RunOptions) -> None:
        self.conn, self.options = conn, options
        self._left_invalid: tuple[str, ...] = ()  # by the CONCURRENTLY build that just failed

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
        return self._apply(migration)

    def apply_all(
        self,
        migrations: Sequence[Migration],
        on_applied: Callable[[Applied], None] | None = None,
    ) -> list[Applied]:
        """Apply ``migrations`` in order; runs of transactional ones travel in batches.

        Each is still its own transaction with its history row. ``on_applied`` gets each
        applied migration, in order, as soon as its batch is back, also when a later one
        fails or the run is interrupted. A lock timeout in a batch: the migrations before
        it are in, it is retried alone (the usual retries), then the rest follow.
        """
        done: list[Applied] = []

        def applied(result: Applied) -> None:
            done.append(result)
            if on_applied is not None:
                on_applied(result)

        pending, size = list(migrations), batch.FIRST_SIZE
        while pending:
            chosen = batch.take(pending, size)
            del pending[: len(chosen)]
            started = time.perf_counter()
            if len(chosen) == 1:
                with structlog.contextvars.bound_contextvars(migration=chosen[0].name):
                    applied(self.apply(chosen[0]))
            elif (timed_out := self._apply_batch(chosen, applied)) is not None:
                index, exc = timed_out
                pending[:0] = chosen[index + 1 :]
                with structlog.contextvars.bound_contextvars(migration=chosen[index].name):
                    applied(self._apply(chosen[index], timed_out=exc))
            if batch.batchable(chosen[0]):  # another kind's pace says nothing of the next
                size = batch.next_size(time.perf_counter() - started, len(chosen))
        return done

    def _apply(
        self, migration: Migration, timed_out: pg_errors.LockNotAvailable | None = None
    ) -> Applied:
        unit = unit_of(migration.name, "migration.sql", migration.parsed)
        if unit.script.parse_error:
            log.warning(
                "sql_not_parsed",
                migration=unit.name,
                detail=unit.script.parse_error,
                **{REPORTED: True},  # the lint report and the pending list say it
            )
        started = time.perf_counter()
        table = self.options.table
        if unit.script.transactional:
            stamp = datetime.now(UTC)
            attempts = self._transaction(
                unit,
                lambda: history.insert_applied(self.conn, table, migration, stamp),
                timed_out=timed_out,
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
        unit = unit_of(migration.name, "down.sql", script)
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
                unit = unit_of(migration.name, "migration.sql", migration.parsed)
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

    def _apply_batch(
        self, chosen: list[Migration], applied: Callable[[Applied], None]
    ) -> tuple[int, pg_errors.LockNotAvailable] | None:
        """Send ``chosen`` as one batch; the committed ones go to ``applied`` whatever
        follows them. Returns where a lock timeout struck (to retry alone), else None."""
        sent: list[batch.Sent] = []
        try:
            batch.pipeline(self.conn, self.options.table, chosen, sent)
        except BaseException as exc:
            committed, rest = batch.split(sent)
            # no session restore here: a migration that changes the session ends its batch,
            # so one that committed before a failure is never among them
            self._batch_done(committed, len(chosen), applied, restore=False)
            if not isinstance(exc, psycopg.Error) or not rest:
                raise  # an interrupt: what is committed was reported, the rest never ran
            self._abandon(savepoint=False)
            if isinstance(exc, pg_errors.LockNotAvailable):
                return len(committed), exc
            failed = rest[0].migration
            unit = unit_of(failed.name, "migration.sql", failed.parsed)
            statement = first_unfinished(unit.script, rest[0].statements)
            raise self._fail(unit, statement, exc) from None
        self._batch_done(sent, len(chosen), applied)
        return None

    def _batch_done(
        self,
        sent: list[batch.Sent],
        size: int,
        applied: Callable[[Applied], None],
        *,
        restore: bool = True,
    ) -> None:
        if restore and any(batch.changes_session(item.migration.parsed) for item in sent):
            self._restore_session()  # the last one may have changed them for the session
        for item in sent:
            seconds = item.seconds
            (log.debug if self.options.quiet else log.info)(
                "migration_applied",
                migration=item.migration.name,
                seconds=round(seconds, 4),
                transactional=True,
                attempts=1,
                batch=size,
            )
            applied(Applied(item.migration.name, seconds, True, 1))

    def _done(self, unit: Unit, started: float, attempts: int, event: str) -> Applied:
        if batch.changes_session(unit.script):
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
        unit: Unit,
        record: Callable[[], None],
        *,
        savepoint: bool = False,
        retry: bool = True,
        timed_out: pg_errors.LockNotAvailable | None = None,
    ) -> int:
        """One transaction (or savepoint): the statements, then ``record``; returns tries.

        They travel in one pipeline; the statement that failed is the first without a
        result, so its line is known even when the server gives no position. ``timed_out``:
        a first try (in a batch) hit the lock timeout, the next one waits as retries do.
        """
        conn, attempt = self.conn, 1
        if timed_out is not None:
            attempt = self._next_try(unit, attempt=attempt, exc=timed_out)
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
                    raise self._fail(unit, first_unfinished(unit.script, cursors), exc) from None
                attempt = self._next_try(
                    unit, attempt=attempt, exc=exc, retries=None if retry else 0
                )

    def _abandon(self, savepoint: bool) -> None:
        status = self.conn.info.transaction_status
        if status == psycopg.pq.TransactionStatus.IDLE or self.conn.broken:
            return
        self.conn.execute("ROLLBACK TO SAVEPOINT predeploy" if savepoint else "ROLLBACK")

    def _statements(self, unit: Unit, migration: Migration) -> int:
        """Run statement by statement in autocommit; the row stays failed unless all succeed.

        A lock timeout retries from the statement that timed out, or from the script's
        own BEGIN when it struck inside one (that transaction was lost).
        """
        conn, table = self.conn, self.options.table
        row_id = history.insert_started(conn, table, migration)
        done, attempt, block_start, index = 0, 1, None, 0
        statements = unit.script.statements
        try:
            while index < len(statements):
                statement = statements[index]
                try:
                    self._execute(statement)
                except pg_errors.LockNotAvailable as exc:
                    if block_start is not None:  # the script's own transaction was lost too
                        conn.execute("ROLLBACK")
                        index, block_start = block_start, None
                    attempt = self._next_try(unit, attempt=attempt, exc=exc, row_id=row_id)
                    continue
                except psycopg.Error as exc:
                    failure = self._fail(unit, statement, exc, left_failed=True)
                    if isinstance(failure, MigrationFailed):
                        failure.ran = tuple(
                            s.first_line for s in statements[: _kept(index, block_start)]
                        )
                    if conn.broken:  # nothing more can be recorded: the row stays failed
                        raise failure from None
                    self._abandon(savepoint=False)
                    history.record_failure(conn, table, row_id, failure.message, done)
                    raise failure from None
                if statement.kind == "TransactionStmt":
                    status = conn.info.transaction_status
                    block_start = index if status == psycopg.pq.TransactionStatus.INTRANS else None
                done += 1
                index += 1
        except KeyboardInterrupt as exc:  # SIGINT, SIGTERM, SIGHUP: psycopg cancelled it
            kept = tuple(s.first_line for s in statements[: _kept(index, block_start)])
            raise self._stopped(unit, row_id, kept, exc) from exc
        history.finish(conn, table, row_id, steps=1)
        return attempt

    def _stopped(
        self, unit: Unit, row_id: str, ran: tuple[str, ...], exc: KeyboardInterrupt
    ) -> StoppedPartWay:
        """A signal part-way through a migration outside a transaction: its row stays failed
        (finished_at null), with why when the session can still say it."""
        total = len(unit.script.statements)
        signum = signal.Signals[exc.signal] if isinstance(exc, Terminated) else signal.SIGINT
        why = f"stopped by {signum.name} after {len(ran)} of its {total} statement(s) had run"
        try:
            if not self.conn.broken:
                self._abandon(savepoint=False)
                history.record_failure(self.conn, self.options.table, row_id, why, len(ran))
        except (psycopg.Error, KeyboardInterrupt):  # a second signal, or the server went away
            log.warning("failure_not_recorded", migration=unit.name, detail=why)
        return StoppedPartWay(signum, unit.name, ran, total)

    def _undo_statements(self, unit: Unit) -> int:
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
                fix = (
                    "once it has the privilege,"
                    if isinstance(exc, pg_errors.InsufficientPrivilege)
                    else "fix down.sql (IF EXISTS makes it safe to run again), then"
                )
                then = (
                    f"{index} of its {len(statements)} statement(s) ran before it and "
                    f"{unit.name} is still recorded as applied: {fix} roll back again"
                )
                failure = self._fail(unit, statements[index], exc, then=then)
                if isinstance(failure, MigrationFailed):  # what stays done (the runbook says)
                    failure.ran = tuple(
                        s.first_line for s in statements[: _kept(index, block_start)]
                    )
                raise failure from None
            if statements[index].kind == "TransactionStmt":
                in_block = conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
                block_start = index if in_block else None
            index += 1
        history.mark_undone(conn, self.options.table, unit.name)
        return attempt

    def _execute(self, statement: Statement) -> None:
        self._left_invalid = ()
        if statement.concurrent:
            # A CONCURRENTLY build's waits block no reads or writes, and a lock timeout would
            # leave an INVALID index behind: let it wait, bounded by statement_timeout only.
            building = statement.kind == "IndexStmt"
            before = invalid_indexes(self.conn, statement) if building else ()
            self.conn.execute("SET lock_timeout = 0")
            try:
                self.conn.execute(statement.text, prepare=False)
            except psycopg.Error:
                if building and not self.conn.broken:  # what the failed build left behind
                    after = invalid_indexes(self.conn, statement)
                    self._left_invalid = tuple(i for i in after if i not in before)
                raise
            finally:
                self._restore_session()
            return
        self.conn.execute(statement.text, prepare=False)

    def _next_try(
        self,
        unit: Unit,
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
            holders = [blockers.describe(b) for b in self._holders(unit)]
        while attempt <= limit:
            pause = backoff(attempt)
            seen = self._holders(unit)
            holders = [blockers.describe(b) for b in seen]
            log.warning(
                "lock_timeout_retry",
                migration=unit.name,
                attempt=attempt,
                pause_s=pause,
                blockers=holders or None,
            )
            if not any(b.certain for b in seen):  # none, or other roles' that come and go
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

    def _holders(self, unit: Unit) -> list[blockers.Blocker]:
        """Who holds ``unit``'s tables: the blocker scan's sessions, other roles' included."""
        lock_timeout = self.options.limits.lock_timeout
        return blockers.scan(self.conn, unit.tables, lock_timeout, uncertain=True)

    def _fail(
        self,
        unit: Unit,
        statement: Statement | None,
        exc: psycopg.Error,
        *,
        left_failed: bool = False,
        then: str | None = None,
    ) -> MigrationError:
        invalid, self._left_invalid = self._left_invalid, ()
        return failure(
            unit,
            statement,
            exc,
            table=self.options.table,
            broken=self.conn.broken,
            left_failed=left_failed,
            then=then,
            user=None if self.conn.broken else self.conn.info.user,
            invalid=invalid,
            owner=None if self.conn.broken else owner_of(self.conn, exc, statement),
        )


# the INVALID indexes of a table, "schema"."name" (a CREATE INDEX CONCURRENTLY that fails
# after its catalogue entry was made leaves one: it slows writes and is never used)
_INVALID = """
SELECT n.nspname, c.relname FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indrelid = to_regclass(%s) AND NOT i.indisvalid ORDER BY c.oid
"""


def invalid_indexes(conn: Conn, statement: Statement) -> tuple[str, ...]:
    """The INVALID indexes on the table ``statement`` (a CREATE INDEX) builds on; none when
    the table is unknown or the catalogue cannot be read."""
    if not statement.tables:
        return ()
    table = sql.Identifier(*statement.tables[0].split(".", 1)).as_string(conn)
    try:
        rows = conn.execute(_INVALID, (table,)).fetchall()
    except psycopg.Error:
        return ()
    return tuple(".".join(sql.Identifier(part).as_string(conn) for part in row) for row in rows)


def _kept(index: int, block_start: int | None) -> int:
    """How many statements stay done when statement ``index`` fails: those before the
    script's own open transaction, if one is open (the failure rolls it back)."""
    return index if block_start is None else block_start
