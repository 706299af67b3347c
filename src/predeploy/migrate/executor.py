"""The one executor: apply, rehearse and rollback run every script through it.

A script that can run in a transaction runs in one, with its bookkeeping (the history
row) in the same transaction: BEGIN, its statements, the row, COMMIT, sent in one
pipeline (one round trip). ``apply_all`` sends runs of such migrations in batches, one
sync for many, each still its own transaction (see ``batch``). A script that cannot
(CONCURRENTLY, its own BEGIN/COMMIT) runs statement by statement behind a row that stays
failed if it stops part-way.

Every statement runs under the migration limits (lock_timeout, statement_timeout); a
lock timeout rolls the script back and the next try waits for the sessions that held its
tables (``lockwait``). Scripts outside a transaction: ``stepwise``; the session both
share: ``session``.

Errors carry the migration, the file, the SQLSTATE and line:column (one mapper:
``outcome.failure``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg
import structlog
from psycopg import errors as pg_errors

from predeploy._util.log import REPORTED
from predeploy.db.pipeline import pipeline
from predeploy.errors import MigrationError
from predeploy.migrate import batch, history, stepwise
from predeploy.migrate.discovery import Migration
from predeploy.migrate.outcome import (
    Applied,
    MigrationFailed,
    Rehearsed,
    RunOptions,
    Unit,
    first_unfinished,
    unit_of,
)
from predeploy.migrate.session import ScriptSession
from predeploy.migrate.sqlscript import Script

if TYPE_CHECKING:
    from predeploy.db.target import Target

__all__ = [
    "Applied",
    "Executor",
    "MigrationFailed",
    "Rehearsed",
    "RunOptions",
    "run_options",
]

log = structlog.get_logger(__name__)


def run_options(target: Target, *, lock_retries: int) -> RunOptions:
    """The executor's options on ``target``: history table, migration limits, retries
    (PREDEPLOY_LOCK_RETRIES)."""
    return RunOptions(
        table=target.history,
        limits=target.limits,
        lock_retries=lock_retries,
        search_path=target.search_path,
    )


class Executor(ScriptSession):
    """Runs scripts on ``conn`` (an autocommit session) under the migration limits.

    Use it as a context manager: the session has the migration limits inside, the
    catalogue limits again after.
    """

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
            attempts = stepwise.apply_statements(self, unit, migration)
        return self._done(unit, started, attempts, "migration_applied")

    def undo(self, migration: Migration, script: Script) -> Applied:
        """Run ``script`` (the down.sql of ``migration``) and mark the migration rolled back:
        in the same transaction, or (DROP INDEX CONCURRENTLY...) after every statement ran."""
        unit = unit_of(migration.name, "down.sql", script)
        started = time.perf_counter()
        table = self.options.table
        if not script.transactional:
            log.info("rollback_outside_transaction", migration=unit.name, reason=script.reason)
            attempts = stepwise.undo_statements(self, unit)
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
            self.abandon(savepoint=False)
            if isinstance(exc, pg_errors.LockNotAvailable):
                return len(committed), exc
            failed = rest[0].migration
            unit = unit_of(failed.name, "migration.sql", failed.parsed)
            statement = first_unfinished(unit.script, rest[0].statements)
            raise self.fail(unit, statement, exc) from None
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
            self.restore_session()  # the last one may have changed them for the session
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
            self.restore_session()  # the script may have changed them for the session
        seconds = time.perf_counter() - started
        (log.debug if self.options.quiet else log.info)(
            event,
            migration=unit.name,
            seconds=round(seconds, 4),
            transactional=unit.script.transactional,
            attempts=attempts,
        )
        return Applied(unit.name, seconds, unit.script.transactional, attempts)

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

        The statement that failed is the first without a result, so its line is known even
        when the server gives no position. ``timed_out``: a first try (in a batch) hit the
        lock timeout, the next one waits as retries do.
        """
        attempt = 1
        if timed_out is not None:
            attempt = self.next_try(unit, attempt=attempt, exc=timed_out)
        while True:
            cursors: list[psycopg.Cursor[tuple[object, ...]]] = []
            try:
                self._send(unit, record, cursors, savepoint=savepoint)
                return attempt
            except psycopg.Error as exc:
                self.abandon(savepoint)
                if not isinstance(exc, pg_errors.LockNotAvailable):
                    raise self.fail(unit, first_unfinished(unit.script, cursors), exc) from None
                attempt = self.next_try(
                    unit, attempt=attempt, exc=exc, retries=None if retry else 0
                )

    def _send(
        self,
        unit: Unit,
        record: Callable[[], None],
        cursors: list[psycopg.Cursor[tuple[object, ...]]],
        *,
        savepoint: bool,
    ) -> None:
        """BEGIN, the statements, ``record``, COMMIT in one pipeline; ``cursors`` gets the
        statements' results as they come."""
        conn = self.conn
        begin, end = (
            ("SAVEPOINT predeploy", "RELEASE SAVEPOINT predeploy")
            if savepoint
            else ("BEGIN", "COMMIT")
        )
        if unit.script.parse_error:  # one unsplit text: only the simple protocol runs it
            conn.execute(begin)
            cursors.append(conn.execute(unit.script.text, prepare=False))
            record()
            conn.execute(end)
            return
        with pipeline(conn):
            conn.execute(begin)
            cursors.extend(conn.execute(st.text, prepare=False) for st in unit.script.statements)
            record()
            conn.execute(end)
