"""Connections: every database conversation starts here.

``connect`` applies the connect timeout and application_name, and turns libpq's
multi-line failures into one ``DatabaseUnreachable`` line that names the server
(never the password).
"""

from __future__ import annotations

import math
import re
import statistics
import time
from typing import TYPE_CHECKING, Any, TypeAlias

import psycopg
from psycopg.conninfo import make_conninfo

from predeploy.config.dburl import DatabaseUrl
from predeploy.errors import DatabaseUnreachable

if TYPE_CHECKING:
    from predeploy.config.settings import Settings

__all__ = ["APPLICATION_NAME", "Conn", "connect", "describe_failure", "round_trip_ms", "target_url"]

Conn: TypeAlias = psycopg.Connection[tuple[Any, ...]]

APPLICATION_NAME = "predeploy"

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
)


def connect(
    url: DatabaseUrl,
    *,
    timeout: float,
    variable: str = "DATABASE_URL",
    autocommit: bool = True,
    application_name: str = APPLICATION_NAME,
) -> Conn:
    """Open a connection to ``url`` within ``timeout`` seconds."""
    params = url.connect_params()
    params.setdefault("application_name", application_name)
    try:
        return psycopg.connect(
            make_conninfo("", **params),
            autocommit=autocommit,
            connect_timeout=max(1, math.ceil(timeout)),
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnreachable(describe_failure(exc, url, timeout, variable)) from None


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
    detail = _last_line(text)
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


def target_url(settings: Settings, *, direct: bool = False) -> tuple[DatabaseUrl, str]:
    """The URL a run talks to and the setting it came from.

    ``direct`` asks for the URL of migrations and backups (DIRECT_DATABASE_URL
    when set). In dev without DATABASE_URL, the embedded server is started or reused.
    """
    if settings.uses_embedded:
        from predeploy.postgres import embedded  # noqa: PLC0415 (only dev needs the wheel's machinery)

        return embedded.start(settings.pgdata).url, "the embedded dev database"
    if direct and settings.direct_database_url is not None:
        return settings.direct_database_url, "DIRECT_DATABASE_URL"
    assert settings.database_url is not None  # noqa: S101 (uses_embedded is False)
    return settings.database_url, "DATABASE_URL"
