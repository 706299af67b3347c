"""Connecting to a real server: success and each real failure, in one line."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from predeploy.config.dburl import parse_url
from predeploy.db.connect import CATALOG, connect
from predeploy.errors import DatabaseUnreachable
from support.servers import Server


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def test_connects_and_sets_application_name(database_url: str) -> None:
    """A connection reaches the database and names itself predeploy."""
    with connect(parse_url(database_url, "DATABASE_URL"), limits=CATALOG, timeout=5) as conn:
        row = conn.execute(
            "SELECT current_database(), current_setting('application_name')"
        ).fetchone()
    assert row is not None
    assert row[0] == database_url.rsplit("/", 1)[1]
    assert row[1] == "predeploy"


def test_wrong_password_says_authentication_failed(pg_server: Server) -> None:
    """A wrong password against scram auth is exit 3 'authentication failed', no password."""
    url = parse_url(pg_server.url("postgres", password="not-the-pw-42"), "DATABASE_URL")
    with pytest.raises(DatabaseUnreachable, match="authentication failed for user postgres") as err:
        connect(url, limits=CATALOG, timeout=5)
    assert err.value.exit_code == 3
    assert "not-the-pw-42" not in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_database_is_named(pg_server: Server) -> None:
    """A database that does not exist is named in the error."""
    url = parse_url(pg_server.url("no_such_db"), "DATABASE_URL")
    with pytest.raises(
        DatabaseUnreachable, match=r"database no_such_db does not exist on 127\.0\.0\.1"
    ):
        connect(url, limits=CATALOG, timeout=5)


def test_closed_port_names_host_and_port() -> None:
    """A closed port fails at once, naming host:port."""
    url = parse_url("postgresql://u:pw@127.0.0.1:1/x", "DATABASE_URL")
    with pytest.raises(
        DatabaseUnreachable, match=r"cannot reach 127\.0\.0\.1:1: connection refused"
    ):
        connect(url, limits=CATALOG, timeout=5)


def test_silent_server_times_out_within_the_timeout(silent_port: int) -> None:
    """A server that never answers fails after the connect timeout, not later."""
    url = parse_url(
        f"postgresql://u:pw@127.0.0.1:{silent_port}/x", "DATABASE_URL", default_connect_timeout=2
    )
    started = time.monotonic()
    with pytest.raises(
        DatabaseUnreachable, match=rf"no answer from 127\.0\.0\.1:{silent_port} within 2s"
    ):
        connect(url, limits=CATALOG, timeout=2)
    assert time.monotonic() - started < 4
