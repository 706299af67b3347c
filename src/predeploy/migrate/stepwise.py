"""Scripts that cannot run in a transaction (CONCURRENTLY, their own BEGIN/COMMIT): one
statement at a time in autocommit.

A migration runs behind a history row that stays failed unless every statement ran; a
rollback marks the migration rolled back once all of its down.sql ran. A lock timeout
retries from the statement that timed out, or from the script's own BEGIN when it struck
inside one (that transaction was lost). A failure or a signal says which statements stay
done.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
import structlog
from psycopg import errors as pg_errors

from predeploy.db.connect import Conn
from predeploy.errors import MigrationError, StoppedPartWay, Terminated
from predeploy.migrate import history
from predeploy.migrate.discovery import Migration
from predeploy.migrate.outcome import MigrationFailed, Unit
from predeploy.migrate.session import ScriptSession
from predeploy.migrate.sqlscript import Statement

__all__ = ["apply_statements", "undo_statements"]

log = structlog.get_logger(__name__)


@dataclass
class _Place:
    """Where a statement-by-statement run stands."""

    index: int = 0  # the statement to run next
    block_start: int | None = None  # the script's own BEGIN, while its transaction is open
    attempt: int = 1
    done: int = 0  # statements that ran, counting those run again after a lost block

    def lose_block(self, conn: Conn) -> None:
        """A lock timeout inside the script's own transaction lost all of it: from its BEGIN."""
        if self.block_start is not None:
            conn.execute("ROLLBACK")
            self.index, self.block_start = self.block_start, None

    def ran(self, conn: Conn, statement: Statement) -> None:
        if statement.kind == "TransactionStmt":
            in_block = conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            self.block_start = self.index if in_block else None
        self.done += 1
        self.index += 1

    def kept(self, statements: Sequence[Statement]) -> tuple[str, ...]:
        """The statements that stay done when the current one fails: those before the
        script's own open transaction, if one is open (the failure rolls it back)."""
        count = self.index if self.block_start is None else self.block_start
        return tuple(s.first_line for s in statements[:count])


def apply_statements(session: ScriptSession, unit: Unit, migration: Migration) -> int:
    """Run ``migration`` statement by statement; the row stays failed unless all succeed.
    Returns the tries."""
    conn, table = session.conn, session.options.table
    row_id = history.insert_started(conn, table, migration)
    place, statements = _Place(), unit.script.statements
    try:
        while place.index < len(statements):
            statement = statements[place.index]
            try:
                session.execute(statement)
            except pg_errors.LockNotAvailable as exc:
                place.lose_block(conn)
                place.attempt = session.next_try(
                    unit, attempt=place.attempt, exc=exc, row_id=row_id
                )
                continue
            except psycopg.Error as exc:
                raise _failed(session, unit, place, row_id, exc) from None
            place.ran(conn, statement)
    except KeyboardInterrupt as exc:  # SIGINT, SIGTERM, SIGHUP: psycopg cancelled it
        raise _stopped(session, unit, row_id, place.kept(statements), exc) from exc
    history.finish(conn, table, row_id, steps=1)
    return place.attempt


def _failed(
    session: ScriptSession, unit: Unit, place: _Place, row_id: str, exc: psycopg.Error
) -> MigrationError:
    """The failure of the current statement, recorded on the row when the session lives."""
    statements = unit.script.statements
    failure = session.fail(unit, statements[place.index], exc, left_failed=True)
    if isinstance(failure, MigrationFailed):
        failure.ran = place.kept(statements)
    if session.conn.broken:  # nothing more can be recorded: the row stays failed
        return failure
    session.abandon(savepoint=False)
    history.record_failure(session.conn, session.options.table, row_id, failure.message, place.done)
    return failure


def _stopped(
    session: ScriptSession, unit: Unit, row_id: str, ran: tuple[str, ...], exc: KeyboardInterrupt
) -> StoppedPartWay:
    """A signal part-way through a migration outside a transaction: its row stays failed
    (finished_at null), with why when the session can still say it."""
    total = len(unit.script.statements)
    signum = signal.Signals[exc.signal] if isinstance(exc, Terminated) else signal.SIGINT
    why = f"stopped by {signum.name} after {len(ran)} of its {total} statement(s) had run"
    try:
        if not session.conn.broken:
            session.abandon(savepoint=False)
            history.record_failure(session.conn, session.options.table, row_id, why, len(ran))
    except (psycopg.Error, KeyboardInterrupt):  # a second signal, or the server went away
        log.warning("failure_not_recorded", migration=unit.name, detail=why)
    return StoppedPartWay(signum, unit.name, ran, total)


def undo_statements(session: ScriptSession, unit: Unit) -> int:
    """A down.sql that cannot run in a transaction, statement by statement; the migration
    is marked rolled back once all ran, and stays applied if one fails. Returns the tries."""
    conn, statements, place = session.conn, unit.script.statements, _Place()
    while place.index < len(statements):
        try:
            session.execute(statements[place.index])
        except pg_errors.LockNotAvailable as exc:
            place.lose_block(conn)
            place.attempt = session.next_try(unit, attempt=place.attempt, exc=exc)
            continue
        except psycopg.Error as exc:
            raise _undo_failed(session, unit, place, exc) from None
        place.ran(conn, statements[place.index])
    history.mark_undone(conn, session.options.table, unit.name)
    return place.attempt


def _undo_failed(
    session: ScriptSession, unit: Unit, place: _Place, exc: psycopg.Error
) -> MigrationError:
    conn, statements = session.conn, unit.script.statements
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")
    fix = (
        "once it has the privilege,"
        if isinstance(exc, pg_errors.InsufficientPrivilege)
        else "fix down.sql (IF EXISTS makes it safe to run again), then"
    )
    then = (
        f"{place.index} of its {len(statements)} statement(s) ran before it and "
        f"{unit.name} is still recorded as applied: {fix} roll back again"
    )
    failure = session.fail(unit, statements[place.index], exc, then=then)
    if isinstance(failure, MigrationFailed):  # what stays done (the runbook says)
        failure.ran = place.kept(statements)
    return failure
