"""What running scripts yields: results, and the one mapper from a server error to
the failure an operator reads (migration, file, SQLSTATE, line:column).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from predeploy.db.connect import Conn, Limits
from predeploy.db.failures import message_of
from predeploy.errors import ConfigError, MigrationError
from predeploy.migrate.history import Table
from predeploy.migrate.sqlscript import Script, Statement, position_to_line_column

__all__ = [
    "Applied",
    "MigrationFailed",
    "Owner",
    "Rehearsed",
    "RunOptions",
    "Unit",
    "failure",
    "first_unfinished",
    "owner_of",
    "unit_of",
]


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
        self.ran: tuple[str, ...] = ()  # left failed: the first lines of the statements that ran
        self.invalid: tuple[str, ...] = ()  # the INVALID indexes its failed build left behind


@dataclass(frozen=True)
class Unit:
    """A script as the executor runs it: whose, which file, the tables it names."""

    name: str
    file: str  # migration.sql or down.sql
    script: Script
    tables: frozenset[str]


def failure(
    unit: Unit,
    statement: Statement | None,
    exc: psycopg.Error,
    *,
    table: Table,
    broken: bool = False,
    left_failed: bool = False,
    then: str | None = None,
    user: str | None = None,
    invalid: Sequence[str] = (),
    owner: Owner | None = None,
) -> MigrationError:
    """The error with its place in the file: the server's position, else the statement's.

    ``broken``: the session died, so it is the connection, not the SQL, that failed.
    ``user``: the session's role (a missing privilege names it); ``invalid``: the INVALID
    indexes a failed CREATE INDEX CONCURRENTLY left behind (looked up in pg_index);
    ``owner``: the role that owns what a "must be owner of" names (``owner_of``).
    """
    if broken:  # libpq's text has several lines; "fix the SQL" would be wrong
        return _connection_lost(unit, exc, left_failed=left_failed)
    message = message_of(exc)
    if exc.diag.message_detail:  # one line: a deadlock's has a line per process
        message += f" (DETAIL: {' '.join(exc.diag.message_detail.split())})"
    denied = isinstance(exc, pg_errors.InsufficientPrivilege)
    if statement is None:  # every statement ran: the bookkeeping failed
        error = MigrationError(
            f"{unit.file} of {unit.name} ran, but recording it in {table} "
            f"failed [{exc.diag.sqlstate}]: {message}; it was rolled back"
        )
        error.exit_code = ConfigError.exit_code if denied else error.exit_code
        return error
    if denied:  # a missing privilege is configuration (exit 2), not SQL to fix
        advice = _privilege_advice(unit, statement, message, user, owner)
        then = f"{advice}; {_state(unit, left_failed, then)}"
    if then is None:
        then = _what_next(unit, statement, exc, invalid, left_failed=left_failed)
    error = _located(unit, statement, exc, message, left_failed=left_failed, then=then)
    error.invalid = tuple(invalid)  # the runbook drops them before the resolve
    error.exit_code = ConfigError.exit_code if denied else error.exit_code
    return error


def _located(
    unit: Unit,
    statement: Statement,
    exc: psycopg.Error,
    message: str,
    *,
    left_failed: bool,
    then: str | None,
) -> MigrationFailed:
    """The failure at its line:column: the server's position, else the statement's start."""
    diag = exc.diag
    position = int(diag.statement_position or 1)
    line, column = position_to_line_column(unit.script.text, statement.offset + position)
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


def _what_next(
    unit: Unit,
    statement: Statement,
    exc: psycopg.Error,
    invalid: Sequence[str],
    *,
    left_failed: bool,
) -> str | None:
    """What to do after a deadlock, or a CONCURRENTLY build that failed; None: the usual."""
    if isinstance(exc, pg_errors.DeadlockDetected) and not left_failed:
        return "it was rolled back: another session's locks crossed its own; run it again"
    if not (statement.concurrent and statement.kind == "IndexStmt"):
        return None
    name = statement.index_name
    if isinstance(exc, pg_errors.DuplicateTable):  # nothing was built: the name is taken
        return (
            f"the index {name or 'of that name'} already exists and was not built by this "
            f"run: rename it or use IF NOT EXISTS, then `predeploy resolve --rolled-back "
            f"{unit.name}` and migrate again"
        )
    if invalid:
        drops = "; ".join(f"DROP INDEX CONCURRENTLY {index}" for index in invalid)
        return (
            f"it left the INVALID index {', '.join(invalid)} behind: remove it with "
            f"{drops}; then `predeploy resolve --rolled-back {unit.name}`, fix the SQL "
            f"and migrate again"
        )
    return None


# the privilege a statement of this kind needs on the table the server names
_TABLE_PRIVILEGE = {
    "InsertStmt": "INSERT",
    "UpdateStmt": "SELECT, UPDATE",  # its WHERE reads the rows
    "DeleteStmt": "SELECT, DELETE",
    "SelectStmt": "SELECT",
    "TruncateStmt": "TRUNCATE",
}


@dataclass(frozen=True)
class Owner:
    """The role that owns an object a statement needed to own."""

    role: str
    superuser: bool

    @property
    def quoted(self) -> str:
        return _quoted(self.role)


def _quoted(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def _privilege_advice(
    unit: Unit, statement: Statement, message: str, user: str | None, owner: Owner | None
) -> str:
    """What to do about 'permission denied for table x' or 'must be owner of table x'."""
    who = _quoted(user) if user else "the role it runs as"
    script = "this rollback" if unit.file == "down.sql" else "this migration"
    if message.startswith("must be owner of "):
        what = message.removeprefix("must be owner of ").split(" (DETAIL", 1)[0]
        if owner is not None and owner.superuser:  # membership of a superuser: never advised
            return (
                f"only the owner of {what}, the superuser {owner.quoted}, may do that: run "
                f"{script} as {owner.quoted}, or have an admin give {what} to a role {who} "
                f"is a member of (ALTER ... OWNER TO)"
            )
        if owner is not None:
            return (
                f"only the owner of {what}, {owner.quoted} (or a member of it), may do that: "
                f"run {script} as {owner.quoted}, or have an admin GRANT {owner.quoted} TO {who}"
            )
        return (
            f"only the owner of {what} (or a member of its owning role) may do that: run "
            f"{script} as that role, or have an admin GRANT the owning role TO {who}"
        )
    table = re.match(r"permission denied for table (\S+)$", message.split(" (DETAIL", 1)[0])
    privilege = _TABLE_PRIVILEGE.get(statement.kind)
    grant = (
        f": GRANT {privilege} ON TABLE {table.group(1)} TO {who}"
        if table is not None and privilege is not None
        else f" to {who}"
    )
    return (
        f"{who} lacks that privilege: run {script} as a role that has it, or have an "
        f"admin grant it{grant}"
    )


def _state(unit: Unit, left_failed: bool, then: str | None) -> str:
    """What became of the script: the caller's words, else rolled back or left failed."""
    if then is not None:
        return then
    if left_failed:
        return (
            f"it stopped part-way and is recorded as failed: check the database, then "
            f"`predeploy resolve --rolled-back {unit.name}` (or --applied) before migrating again"
        )
    undone = "nothing was undone" if unit.file == "down.sql" else "it changed nothing"
    return f"it was rolled back: {undone}"


def _connection_lost(unit: Unit, exc: psycopg.Error, *, left_failed: bool) -> MigrationError:
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


def unit_of(name: str, file: str, script: Script) -> Unit:
    tables = frozenset(t for st in script.statements for t in st.tables)
    return Unit(name, file, script, tables)


def first_unfinished(
    script: Script, cursors: Sequence[psycopg.Cursor[tuple[Any, ...]]]
) -> Statement | None:
    """The first statement without a result; None when all ran (the bookkeeping failed)."""
    if script.parse_error:
        return script.statements[0] if script.statements else None
    for index, statement in enumerate(script.statements):
        if index >= len(cursors) or cursors[index].statusmessage is None:
            return statement
    return None


# "must be owner of table users": the kinds of object whose owner the lookup can name
_MUST_OWN = re.compile(
    r"must be owner of (table|relation|view|materialized view|sequence|index|foreign table"
    r"|schema) (.+)$"
)
_RELATION_OWNER = """
SELECT r.rolname, r.rolsuper FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
WHERE c.oid = to_regclass(%s)
"""
_SCHEMA_OWNER = """
SELECT r.rolname, r.rolsuper FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
WHERE n.nspname = %s
"""


def owner_of(conn: Conn, exc: psycopg.Error, statement: Statement | None) -> Owner | None:
    """The role that owns what a "must be owner of ..." error names (its schema: the
    error's fields, else the statement's own name for it, else the search_path); None
    when the error is another one, the session is in a transaction, or it is not found."""
    found = _MUST_OWN.match(message_of(exc))
    if found is None or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return None  # a lookup must never abort a transaction the run still needs
    kind, name = found.groups()
    try:
        if kind == "schema":
            row = conn.execute(_SCHEMA_OWNER, (name,)).fetchone()
        else:
            regclass = _relation(conn, exc, statement, name)
            row = conn.execute(_RELATION_OWNER, (regclass,)).fetchone()
    except psycopg.Error:
        return None
    return Owner(str(row[0]), bool(row[1])) if row else None


def _relation(conn: Conn, exc: psycopg.Error, statement: Statement | None, name: str) -> str:
    """``name`` (as the server's message has it, unqualified) as a quoted regclass text."""
    diag = exc.diag
    if diag.table_name:
        parts = tuple(p for p in (diag.schema_name, diag.table_name) if p)
    else:
        named = [t for t in (statement.tables if statement else ()) if t.split(".")[-1] == name]
        parts = tuple(named[0].split(".", 1)) if named else (name,)
    return sql.Identifier(*parts).as_string(conn)
