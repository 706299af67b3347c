"""Sessions: the one way predeploy opens a connection to a database.

Every session gets its ``application_name``, the connect timeout, and the
``lock_timeout``/``statement_timeout`` of what it does (``Limits``): migration work uses
the configured ones; catalogue reads (history, blockers, sizes, health, audit, drift) use
``CATALOG``, a short lock timeout of their own, so that they never queue behind an ACCESS
EXCLUSIVE lock. libpq's multi-line failures become one ``DatabaseUnreachable`` line that
names the server (never the password).
"""

from __future__ import annotations

import contextlib
import math
import re
import statistics
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import psycopg
import psycopg.waiting
from psycopg import pq, sql
from psycopg.conninfo import make_conninfo

from predeploy._util.redact import Scrubber
from predeploy.config.dburl import DatabaseUrl
from predeploy.db.failures import message_of
from predeploy.errors import DatabaseUnreachable

__all__ = [
    "APPLICATION_NAME",
    "CATALOG",
    "Conn",
    "Endpoint",
    "Limits",
    "catalog_session",
    "connect",
    "describe_failure",
    "migration_session",
    "refuse_standby",
    "round_trip_ms",
    "use_limits",
]

Conn: TypeAlias = psycopg.Connection[tuple[Any, ...]]

APPLICATION_NAME = "predeploy"


@dataclass(frozen=True)
class Limits:
    """A session's lock_timeout and statement_timeout, in seconds (0: none)."""

    lock_timeout: float
    statement_timeout: float


# catalogue reads: give up on a lock within a second, on any statement within a minute
CATALOG = Limits(lock_timeout=1.0, statement_timeout=60.0)

# libpq reports connection failures as text only (no SQLSTATE reaches psycopg).
_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"password authentication failed|authentication failed"),
        "authentication failed for user {user}: check the password in {variable}",
    ),
    (
        re.compile(r"no password supplied|password is required"),
        "the server asks for a password for user {user}: add it to {variable}",
    ),
    (
        re.compile(r'database "[^"]*" does not exist'),
        "database {database} does not exist on {address}: create it or fix {variable}",
    ),
    (
        re.compile(r'role "[^"]*" does not exist'),
        "user {user} does not exist on {address}: fix {variable}",
    ),
    (
        re.compile(r"no pg_hba\.conf entry"),
        "{address} does not allow this client (no pg_hba.conf entry for user {user})",
    ),
    (
        re.compile(r"timeout expired|timed out"),
        "no answer from {address} within {timeout}: check the host, port and firewall",
    ),
    (
        re.compile(r"Connection refused"),
        "cannot reach {address}: connection refused (is PostgreSQL running and listening there?)",
    ),
    (
        re.compile(r"No such file or directory"),
        "cannot reach {address}: no server socket there (is PostgreSQL running?)",
    ),
    (
        re.compile(r"could not translate host name|Name or service not known"),
        "cannot resolve host {host}: check the host in {variable}",
    ),
    (
        re.compile(r"the database system is (starting up|shutting down|in recovery mode)"),
        "{address} is not accepting connections yet: {detail}",
    ),
    (
        re.compile(r"permission denied for database|not permitted to log in"),
        "user {user} may not connect to {database} on {address}: {detail}",
    ),
)


def connect(
    url: DatabaseUrl,
    *,
    limits: Limits,
    timeout: float,
    variable: str = "DATABASE_URL",
    application_name: str = APPLICATION_NAME,
    search_path: str | None = None,
) -> Conn:
    """Open an autocommit session to ``url`` within ``timeout`` seconds, with ``limits``.

    ``search_path`` (a schema name) makes it exactly that schema, as Prisma's
    ``?schema=`` does for migration sessions.
    """
    params = url.connect_params()
    params.setdefault("application_name", application_name)
    # the URL's own connect_timeout (else PREDEPLOY_CONNECT_TIMEOUT, else Prisma's 5 s)
    params.setdefault("connect_timeout", str(max(2, math.ceil(timeout))))
    try:
        conn = psycopg.connect(make_conninfo("", **params), autocommit=True)
    except psycopg.OperationalError as exc:
        waited = url.effective_connect_timeout or timeout
        raise DatabaseUnreachable(describe_failure(exc, url, waited, variable)) from None
    try:
        use_limits(conn, limits, search_path=search_path)
    except psycopg.Error as exc:
        conn.close()
        raise DatabaseUnreachable(
            f"cannot set up a session on {url.address}: {message_of(exc)}"
        ) from None
    _SESSIONS.setdefault(threading.get_ident(), weakref.WeakSet()).add(conn)
    return conn


@contextlib.contextmanager
def interruptible_waits() -> Iterator[None]:
    """For the block, psycopg waits for the server in a Python loop (``wait_poll``, 0.1 s
    slices) instead of its C one: an interrupt raised in a worker thread (a fleet run's, by
    ``PyThreadState_SetAsyncExc``) is then taken within 0.1 s, and psycopg cancels the
    running statement as it does for Ctrl-C in the main thread. (The C wait takes only the
    main thread's signals, and only once the statement returns.)"""
    before = psycopg.waiting.wait
    psycopg.waiting.wait = psycopg.waiting.wait_poll
    try:
        yield
    finally:
        psycopg.waiting.wait = before


# every session opened, by the thread that opened it: a fleet run's main thread cancels
# what a worker's sessions run when the run is interrupted (a worker blocked in libpq
# takes no interrupt until its statement returns)
_SESSIONS: dict[int, weakref.WeakSet[Conn]] = {}


def cancel_sessions(thread: int) -> None:
    """Cancel the statement each open session of ``thread`` runs (a session between
    statements is left alone); never raises."""
    for conn in list(_SESSIONS.get(thread, ())):
        if conn.closed or conn.pgconn.transaction_status != pq.TransactionStatus.ACTIVE:
            continue
        with contextlib.suppress(psycopg.Error):
            conn.cancel_safe(timeout=5.0)


def use_limits(conn: Conn, limits: Limits, *, search_path: str | None = None) -> None:
    """Set the session's lock_timeout and statement_timeout (and search_path): one round trip."""
    settings: list[sql.Composable] = [
        sql.SQL("set_config('lock_timeout', {}, false)").format(_ms(limits.lock_timeout)),
        sql.SQL("set_config('statement_timeout', {}, false)").format(_ms(limits.statement_timeout)),
    ]
    if search_path is not None:
        settings.append(
            sql.SQL("set_config('search_path', {}, false)").format(
                sql.Literal(sql.Identifier(search_path).as_string(conn))
            )
        )
    conn.execute(sql.SQL("SELECT ") + sql.SQL(", ").join(settings))


def _ms(seconds: float) -> sql.Literal:
    return sql.Literal(f"{round(seconds * 1000)}ms")


@dataclass(frozen=True)
class Endpoint:
    """Where a session goes: the URL, the setting it came from (named when it fails) and
    the connect timeout (PREDEPLOY_CONNECT_TIMEOUT unless the URL has its own)."""

    url: DatabaseUrl
    variable: str
    timeout: float


def catalog_session(at: Endpoint, *, purpose: str = "") -> Conn:
    """A session for catalogue reads and bookkeeping, with the ``CATALOG`` limits."""
    return connect(
        at.url,
        limits=CATALOG,
        timeout=at.timeout,
        variable=at.variable,
        application_name=f"{APPLICATION_NAME} {purpose}".strip(),
    )


def migration_session(at: Endpoint, purpose: str) -> Conn:
    """A session for work that changes the schema, in the URL's ``schema=``.

    It starts with the catalogue limits (its first reads are the history and the catalogue);
    the executor switches it to the migration limits while it applies.
    """
    return connect(
        at.url,
        limits=CATALOG,
        timeout=at.timeout,
        variable=at.variable,
        application_name=f"{APPLICATION_NAME} {purpose}",
        search_path=at.url.schema,
    )


def round_trip_ms(conn: Conn, samples: int = 5) -> float:
    """The median round trip of ``SELECT 1`` on ``conn``, in milliseconds."""
    latencies = []
    for _ in range(samples):
        started = time.perf_counter()
        conn.execute("SELECT 1")
        latencies.append((time.perf_counter() - started) * 1000)
    return statistics.median(latencies)


def describe_failure(exc: BaseException, url: DatabaseUrl, timeout: float, variable: str) -> str:
    """One line for a failed connection attempt, without the password."""
    text = str(exc)
    # the reasons match libpq's own words; only the line shown is scrubbed (as logs are: a
    # short password only where it stands as a word)
    detail = Scrubber([url.password]).text(_last_line(text)) if url.password else _last_line(text)
    for pattern, message in _REASONS:
        if pattern.search(text):
            return message.format(
                user=url.user or "(default)",
                database=url.database,
                address=url.address,
                host=url.host,
                timeout=f"{timeout:g}s",
                variable=variable,
                detail=detail,
            )
    return f"cannot connect to {url.address}: {detail}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else "unknown error"
    return re.sub(r"^.*?failed: (FATAL:\s+)?", "", last)


def refuse_standby(conn: Conn) -> None:
    """DatabaseUnreachable when ``conn`` is a read-only standby."""
    row = conn.execute("SELECT pg_is_in_recovery(), current_database()").fetchone()
    if row is not None and row[0]:
        raise DatabaseUnreachable(
            f"{row[1]} is a standby (read-only, in recovery): point the direct URL "
            f"(DIRECT_URL, DIRECT_DATABASE_URL or DATABASE_URL) at the primary"
        )
