"""The suite's PostgreSQL servers and the throwaway databases made on them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from support.cluster import ThrowawayCluster

__all__ = ["Server", "Target", "fresh_database"]


@dataclass(frozen=True)
class Server:
    """The suite's PostgreSQL: a superuser URL and how to make others."""

    admin_url: str
    cluster: ThrowawayCluster | None

    def url(self, database: str, *, password: str | None = None) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.admin_url)
        pw = info.get("password", "") if password is None else password
        return (
            f"postgresql://{info.get('user', 'postgres')}:{pw}@{info.get('host', 'localhost')}"
            f":{info.get('port', 5432)}/{database}"
        )


@dataclass(frozen=True)
class Target:
    """A fresh database on one of the two servers, with the settings that server needs."""

    name: str  # "suite" or "pg15"
    server: Server
    url: str
    env: dict[str, str]  # PREDEPLOY_PG_BIN_DIR for PostgreSQL 15: its own pg_dump, psql


@contextmanager
def fresh_database(server: Server) -> Iterator[str]:
    """A new, empty database on ``server`` (its URL), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.url(name)
    finally:
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
