"""The session scripts run on: the migration limits, one statement, abandoning a failed
transaction, and the failure an operator reads.

Both ways a script runs (in a transaction: ``executor``; statement by statement outside
one: ``stepwise``) use it. A CONCURRENTLY build runs without a lock timeout, bounded by
statement_timeout only; the INVALID index a failed one leaves behind is named.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

import psycopg
from psycopg import sql

from predeploy.db.connect import CATALOG, Conn, use_limits
from predeploy.errors import MigrationError
from predeploy.migrate import lockwait
from predeploy.migrate.outcome import RunOptions, Unit, failure, owner_of
from predeploy.migrate.sqlscript import Statement

__all__ = ["ScriptSession", "invalid_indexes"]


class ScriptSession:
    """``conn`` (an autocommit session) under the migration limits while in use.

    Use it as a context manager: the session has the migration limits inside, the
    catalogue limits again after.
    """

    def __init__(self, conn: Conn, options: RunOptions) -> None:
        self.conn, self.options = conn, options
        self._left_invalid: tuple[str, ...] = ()  # by the CONCURRENTLY build that just failed

    def __enter__(self) -> Self:
        self.restore_session()
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

    def restore_session(self) -> None:
        """The migration limits and search_path again (a script may have changed them)."""
        use_limits(self.conn, self.options.limits, search_path=self.options.search_path)
        if self.options.search_path is None:  # a script's own SET search_path outlives it
            self.conn.execute("RESET search_path")

    def abandon(self, savepoint: bool) -> None:
        """Roll back what a failed try left open (to the savepoint, in a rehearsal)."""
        status = self.conn.info.transaction_status
        if status == psycopg.pq.TransactionStatus.IDLE or self.conn.broken:
            return
        self.conn.execute("ROLLBACK TO SAVEPOINT predeploy" if savepoint else "ROLLBACK")

    def execute(self, statement: Statement) -> None:
        """Run one statement on its own (outside a pipeline)."""
        self._left_invalid = ()
        if not statement.concurrent:
            self.conn.execute(statement.text, prepare=False)
            return
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
            self.restore_session()

    def next_try(
        self,
        unit: Unit,
        *,
        attempt: int,
        exc: psycopg.Error,
        row_id: str | None = None,
        retries: int | None = None,
    ) -> int:
        """After a lock timeout: wait, then the next try's number (``lockwait.next_try``)."""
        return lockwait.next_try(
            self.conn, self.options, unit, attempt=attempt, exc=exc, row_id=row_id, retries=retries
        )

    def fail(
        self,
        unit: Unit,
        statement: Statement | None,
        exc: psycopg.Error,
        *,
        left_failed: bool = False,
        then: str | None = None,
    ) -> MigrationError:
        """The error an operator reads for ``exc`` (``outcome.failure``)."""
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
