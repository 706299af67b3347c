"""What the server said, in an operator's words: psycopg errors become typed errors.

``translated`` wraps a piece of work on a session: a lock timeout names the sessions in
the way ("blocked by pid N ..."), a missing privilege says which GRANT fixes it, a
read-only standby says to use the primary, a statement timeout says how long it ran.
Each is raised as the caller's error class, so a step reports it with its own exit code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg_errors

from predeploy.db.catalog import blocked_by
from predeploy.errors import Blocked, ConfigError, DatabaseUnreachable, PredeployError

__all__ = ["message_of", "translated"]


def message_of(exc: BaseException) -> str:
    """The server's primary message, all of it (a RAISE may span lines: the CLI shows them
    as one); without one (a client-side error, whose text has several lines of libpq's
    context), the exception's first line; without any text, its kind."""
    diag = getattr(exc, "diag", None)
    primary = (diag.message_primary if diag is not None else None) or ""
    if primary.strip():
        return primary.strip()
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


@contextmanager
def translated(
    conn: psycopg.Connection[tuple[object, ...]] | None,
    doing: str,
    *,
    error: type[PredeployError] = DatabaseUnreachable,
    grant: str | None = None,
) -> Iterator[None]:
    """Run the block; a psycopg error becomes ``error`` with a line that says what to do.

    ``doing`` says what was being done ("reading the migration history"); ``grant`` is
    the statement that fixes a missing privilege.
    """
    try:
        yield
    except pg_errors.LockNotAvailable:
        cls = error if error is not DatabaseUnreachable else Blocked
        raise cls(f"{doing} waited too long for a lock: {blocked_by(conn)}") from None
    except pg_errors.InsufficientPrivilege as exc:
        fix = f": {grant}" if grant else ": grant the privilege to this user, or use another"
        # a missing GRANT is configuration (exit 2) unless the step has a code of its own
        cls = ConfigError if error is DatabaseUnreachable else error
        raise cls(f"{doing}: {message_of(exc)}{fix}") from None
    except pg_errors.ReadOnlySqlTransaction:
        raise error(
            f"{doing}: the server is a read-only standby: point the direct URL at the primary"
        ) from None
    except pg_errors.QueryCanceled as exc:
        raise error(
            f"{doing}: {message_of(exc)} (statement_timeout); nothing was changed"
        ) from None
    except psycopg.OperationalError as exc:
        raise error(f"{doing}: the database connection failed: {message_of(exc)}") from None
    except psycopg.Error as exc:
        state = getattr(getattr(exc, "diag", None), "sqlstate", None)
        code = f" [{state}]" if state else ""
        raise error(f"{doing} failed{code}: {message_of(exc)}") from None
