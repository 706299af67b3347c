"""The database a run acts on: a ``Target``, built once from the settings.

A Target knows where its sessions go (the direct URL for migrations, locks and backups;
the app's URL for health reads), the schema of the history and audit tables (Prisma's
``?schema=``, else ``public``), the migration limits, and the env's policy before the
database is known (``predeploy.db.protection`` raises it where the database says so). In
dev without DATABASE_URL it is the embedded server, started (or reused) the first time a
session needs its URL: starting it is the Target's business, not the session factory's.
Everything below the commands takes a Target and the few settings it uses, never the
whole ``Settings``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from predeploy.config.policy import EMBEDDED, Policy, is_local, policy_for
from predeploy.db.connect import Conn, Endpoint, Limits
from predeploy.db.table import Table

if TYPE_CHECKING:
    from predeploy.config.dburl import DatabaseUrl
    from predeploy.config.settings import Settings

__all__ = ["EMBEDDED_VARIABLE", "Identity", "Target", "identify", "of", "system_identifier"]

EMBEDDED_VARIABLE = "the embedded dev database"  # what failures name for the embedded server


@dataclass(frozen=True)
class Identity:
    """Which database a session really reached, as the server says."""

    system_identifier: str | None  # the cluster (None: this user may not read it)
    database: str
    schema: str


@dataclass(frozen=True)
class Target:
    """The database of one run: where, in which schema, under which policy."""

    schema: str
    history: Table  # Prisma's history table, in ``schema``
    audit: Table  # predeploy's audit table, in ``schema``
    limits: Limits  # PREDEPLOY_LOCK_TIMEOUT and PREDEPLOY_STATEMENT_TIMEOUT, for migrations
    env_policy: Policy  # the env's, before the database is known: protection.policy_of
    # raises it where the database remembers a protected env (gates read that one)
    scratch: bool  # PREDEPLOY_PROTECTED=0: a non-local database a development env may change
    allow_no_backup: bool  # PREDEPLOY_ALLOW_NO_BACKUP=1 (also where the database protects)
    configured: Endpoint | None  # the direct URL (else DATABASE_URL); None: embedded
    app_endpoint: Endpoint | None  # DATABASE_URL (through a pooler, as the app connects)
    pgdata: Path  # the embedded server's data directory
    timeout: float  # PREDEPLOY_CONNECT_TIMEOUT
    tenant_schema: str | None = None  # a fleet's schema-per-tenant target: its schema
    name: str | None = None  # a fleet's target: its name

    @property
    def embedded(self) -> bool:
        """True when this run uses the embedded dev PostgreSQL under ``pgdata``."""
        return self.configured is None

    @property
    def server(self) -> str:
        """host:port, the socket, or "the embedded server"; never starts a server."""
        return EMBEDDED if self.configured is None else self.configured.url.address

    @property
    def local(self) -> bool:
        """The embedded server, a socket, localhost or a loopback address."""
        if self.configured is None:
            return True
        url = self.configured.url
        return is_local(url.host, url.params.get("hostaddr"))

    @property
    def search_path(self) -> str | None:
        """The URL's ``schema=`` (Prisma's), which migration sessions use as search_path."""
        return None if self.configured is None else self.configured.url.schema

    @functools.cached_property
    def direct(self) -> Endpoint:
        """Where migrations, locks, backups and catalogue reads go (the direct URL when set);
        the embedded server is started or reused here, once per Target."""
        if self.configured is not None:
            return self.configured
        from predeploy.db import embedded  # noqa: PLC0415 (only dev needs the wheel)

        return Endpoint(embedded.start(self.pgdata).url, EMBEDDED_VARIABLE, self.timeout)

    @property
    def app(self) -> Endpoint:
        """Where the app connects (DATABASE_URL, maybe a pooler): health reads go there."""
        return self.direct if self.app_endpoint is None else self.app_endpoint

    @property
    def url(self) -> DatabaseUrl:
        """The direct URL (starts the embedded server in dev without DATABASE_URL)."""
        return self.direct.url


def of(settings: Settings) -> Target:
    """The Target of ``settings``' env: no connection is opened, no server started."""
    timeout = settings.connect_timeout
    app = direct = None
    if settings.database_url is not None:  # else the embedded server (dev)
        app = direct = Endpoint(settings.database_url, settings.database_url_var, timeout)
        if settings.direct_database_url is not None:
            direct = Endpoint(settings.direct_database_url, settings.migration_url_var, timeout)
    url = settings.migration_url
    schema = (url.schema if url is not None else None) or "public"
    return Target(
        schema=schema,
        history=Table(schema, settings.migrations_table),
        audit=Table(schema, settings.audit_table),
        limits=Limits(settings.lock_timeout, settings.statement_timeout),
        env_policy=policy_for(settings),
        scratch=settings.protected is False,
        allow_no_backup=settings.allow_no_backup,
        configured=direct,
        app_endpoint=app,
        pgdata=settings.pgdata,
        timeout=timeout,
        tenant_schema=settings.member.schema if settings.member is not None else None,
        name=settings.member.name if settings.member is not None else None,
    )


def identify(conn: Conn, target: Target) -> Identity:
    """What the server says ``conn`` (a session on ``target``) reached."""
    return Identity(system_identifier(conn), conn.info.dbname, target.schema)


def system_identifier(conn: Conn) -> str | None:
    """The server's system identifier (which cluster this is), when this user may read it."""
    try:
        with conn.transaction():
            row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    except psycopg.Error:  # a courtesy: restore checks it when both sides have it
        return None
    return str(row[0]) if row else None
