"""The shadow database: where the schema of the applied migrations is built, then thrown away.

Where it comes from, in this order:

1. ``PREDEPLOY_SHADOW_DATABASE_URL``: a server for shadows (its role needs CREATEDB); when
   set it is the only one tried: the operator chose it, and a problem there is named;
2. the live server itself, when the live role may create databases;
3. a throwaway cluster made with the live major version's own server programs, when they
   are on this machine (``PREDEPLOY_PG_BIN_DIR``, else the usual layouts: see
   ``pgbin.server_bin_dir`` and ``shadow_cluster``);
4. the embedded PostgreSQL, when its major version is the live server's.

When none can be used, ``NoShadow`` (exit 2) says why for each, and which setting enables it.

On each, a throwaway database named ``predeploy_shadow_<key>`` is created, built,
fingerprinted and dropped (``DROP DATABASE ... WITH (FORCE)``). Its creator holds the
session advisory lock ``(72707370, key)`` from before it creates the database until it
has dropped it, so a database of that name whose lock nobody holds belongs to a run
that died: every run sweeps those first (``pg_locks`` shows the locks of every
database, so a sweep never drops a shadow that another live database's run uses).

The shadow server must run the live server's major version and offer every extension
the live database has or the migrations create; otherwise it is refused with one line
before anything is built.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import structlog
from psycopg import sql

from predeploy.config.dburl import DatabaseUrl
from predeploy.db.connect import CATALOG, Conn, connect, refuse_standby
from predeploy.db.failures import message_of
from predeploy.db.locks import SHADOW_LOCK
from predeploy.drift import catalogue
from predeploy.drift.fingerprint import Fingerprint
from predeploy.errors import MigrationError, PredeployError
from predeploy.migrate.discovery import Migration

__all__ = [
    "SHADOW_LOCK",
    "DriftError",
    "NoShadow",
    "ServerFacts",
    "Shadow",
    "expected",
    "required_extensions",
    "sweep",
]

_PREFIX = "predeploy_shadow_"
_SHADOW_NAME = "^predeploy_shadow_[0-9]{1,10}$"
_EXTENSION = re.compile(
    r'CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?("(?:[^"]|"")+"|[\w-]+)', re.IGNORECASE
)
_FACTS = """
SELECT current_setting('server_version_num')::int / 10000, current_setting('server_version'),
       coalesce((SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user), false),
       ARRAY(SELECT name FROM pg_available_extensions), ARRAY(SELECT extname FROM pg_extension)
"""
_ORPHANS = """
SELECT d.datname FROM pg_database d
WHERE d.datname ~ %(pattern)s AND NOT EXISTS (
  SELECT FROM pg_locks l WHERE l.locktype = 'advisory' AND l.objsubid = 2
    AND l.classid = %(key)s::oid AND l.objid::bigint = substr(d.datname, %(start)s)::bigint)
"""

log = structlog.get_logger(__name__)
Build = Callable[[Conn], None]


class DriftError(PredeployError):
    """The expected schema cannot be built: no usable shadow, or the history fails there."""

    exit_code = 5


class NoShadow(DriftError):
    """No place to build a shadow on this machine: a setting (named in the message) enables
    one. The drift check of a run with other work to do is skipped, not failed."""

    exit_code = 2


@dataclass(frozen=True)
class ServerFacts:
    """What a server offers a shadow: its version, rights and extensions."""

    major: int
    version: str
    can_create: bool
    available: frozenset[str]  # pg_available_extensions
    installed: frozenset[str]  # pg_extension of the connected database

    @classmethod
    def read(cls, conn: Conn) -> ServerFacts:
        row = conn.execute(_FACTS).fetchone()
        assert row is not None  # noqa: S101 (SELECT without FROM returns a row)
        major, version, can_create, available, installed = row
        return cls(int(major), str(version).split()[0], bool(can_create),
                   frozenset(available), frozenset(installed))  # fmt: skip


@dataclass(frozen=True)
class Shadow:
    """The expected schema, as a shadow database built it."""

    fingerprint: Fingerprint
    origin: str  # where it was built, for the report
    seconds: float  # create, build, fingerprint and drop


@dataclass(frozen=True)
class _Job:
    """What every shadow source needs: the live server, what to build, what to leave out."""

    live: ServerFacts
    needed: frozenset[str]  # extensions the shadow server must offer
    build: Build
    exclude: tuple[tuple[str, str], ...]
    timeout: float


def required_extensions(migrations: Iterable[Migration]) -> set[str]:
    """The extensions that ``migrations`` create (CREATE EXTENSION statements)."""
    found: set[str] = set()
    for migration in migrations:
        script = migration.parsed
        texts = [s.text for s in script.statements if s.kind == "CreateExtensionStmt"]
        for text in texts if not script.parse_error else [script.text]:
            found.update(_unquote(m.group(1)) for m in _EXTENSION.finditer(text))
    return found


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def expected(
    live_url: DatabaseUrl,
    *,
    build: Build,
    exclude: Iterable[tuple[str, str]],
    extensions: Collection[str] = (),
    shadow_url: DatabaseUrl | None = None,
    embedded_pgdata: Path | None = None,
    pg_bin_dir: Path | None = None,
    timeout: float = 5.0,
    variable: str = "DATABASE_URL",
) -> Shadow:
    """Build the applied migrations' schema in a shadow database and fingerprint it.

    ``build`` applies the applied migrations, in history order, on the connection it is
    given (an autocommit connection to the empty shadow). ``extensions`` are those the
    migrations create (``required_extensions``), checked with the live database's own.
    """
    started = time.perf_counter()
    with connect(live_url, limits=CATALOG, timeout=timeout, variable=variable) as live:
        facts = ServerFacts.read(live)
        job = _Job(facts, facts.installed | set(extensions), build, tuple(exclude), timeout)
        if shadow_url is not None:
            where = f"the shadow server {shadow_url.address} (PREDEPLOY_SHADOW_DATABASE_URL)"
            setting = "PREDEPLOY_SHADOW_DATABASE_URL"
            with connect(shadow_url, limits=CATALOG, timeout=timeout, variable=setting) as admin:
                built = _build_on(admin, shadow_url, where, job)
        elif facts.can_create:
            refuse_standby(live)  # a standby can create no database: say so, before trying
            where = f"the live server {live_url.address}"
            built = _build_on(live, live_url, where, job)
        else:
            where, built = _local(job, pg_bin_dir, embedded_pgdata)
    seconds = time.perf_counter() - started
    log.info("shadow_built", origin=where, objects=built.count(), seconds=round(seconds, 3))
    return Shadow(built, f"a shadow database on {where}", seconds)


def _build_on(admin: Conn, server_url: DatabaseUrl, where: str, job: _Job) -> Fingerprint:
    """Check ``admin``'s server, then build and fingerprint a throwaway database there."""
    _check(where, ServerFacts.read(admin), job.live, job.needed)
    with _throwaway(admin, server_url, where, job.timeout) as conn:
        _run(job.build, conn, where)
        return catalogue.take(conn, exclude=job.exclude)


def _check(where: str, facts: ServerFacts, live: ServerFacts, needed: frozenset[str]) -> None:
    """DriftError naming what differs between the shadow server and the live one."""
    if facts.major != live.major:
        raise DriftError(
            f"{where} runs PostgreSQL {facts.version}, the live server {live.version}: a "
            f"shadow must run the same major version ({live.major}); point "
            f"PREDEPLOY_SHADOW_DATABASE_URL at one, or compare with --expected FILE"
        )
    missing = sorted(needed - facts.available)
    if missing:
        raise DriftError(
            f"{where} lacks the extension(s) {', '.join(missing)} that the live database has "
            f"or the migrations create: install them there, point PREDEPLOY_SHADOW_DATABASE_URL "
            f"at a server that has them, or compare with --expected FILE"
        )
    if not facts.can_create:
        raise DriftError(
            f"the role predeploy uses on {where} cannot create databases: grant it CREATEDB "
            f"(each run creates and drops a throwaway database there)"
        )


class _Unusable(Exception):
    """This source cannot build the shadow here; ``str()`` says why, in a few words."""


def _local(job: _Job, pg_bin_dir: Path | None, pgdata: Path | None) -> tuple[str, Fingerprint]:
    """Without CREATEDB on the live server: a throwaway cluster of the live major version's
    programs, else the embedded server; NoShadow saying why neither could be used."""
    from predeploy.drift import shadow_cluster  # noqa: PLC0415 (only when it is needed)

    why = ["the live role cannot create databases (CREATEDB)"]
    for source in (_cluster, _embedded):
        try:
            return source(job, pg_bin_dir, pgdata)
        except (_Unusable, shadow_cluster.ClusterUnavailable) as exc:
            why.append(str(exc))
    major = job.live.major
    raise NoShadow(
        f"no shadow database for PostgreSQL {major}: {', '.join(why[:-1])} and {why[-1]}; "
        f"set PREDEPLOY_PG_BIN_DIR (to PostgreSQL {major}'s server programs) or "
        f"PREDEPLOY_SHADOW_DATABASE_URL"
    )


def _cluster(job: _Job, pg_bin_dir: Path | None, _pgdata: Path | None) -> tuple[str, Fingerprint]:
    from predeploy.drift import shadow_cluster  # noqa: PLC0415 (only when it is needed)
    from predeploy.programs import pgbin  # noqa: PLC0415

    major = job.live.major
    bin_dir, looked = pgbin.server_bin_dir(major, pg_bin_dir)
    if bin_dir is None:
        where = f"PREDEPLOY_PG_BIN_DIR={pg_bin_dir}" if pg_bin_dir else (
            f"{looked[0]}, {looked[1]} or Homebrew's postgresql@{major}")  # fmt: skip
        raise _Unusable(f"no PostgreSQL {major} initdb, pg_ctl and postgres in {where}")
    where = f"a throwaway PostgreSQL {major} cluster ({bin_dir})"
    with (
        shadow_cluster.running(bin_dir, timeout=max(job.timeout, 30.0)) as url,
        connect(url, limits=CATALOG, timeout=job.timeout, variable="the shadow cluster") as admin,
    ):
        return where, _build_on(admin, url, where, job)


def _embedded(job: _Job, _bin: Path | None, pgdata: Path | None) -> tuple[str, Fingerprint]:
    from predeploy.db import embedded  # noqa: PLC0415 (the wheel only when needed)
    from predeploy.programs import pgbin  # noqa: PLC0415

    version = pgbin.program_version(embedded.bin_dir() / "postgres")
    if pgdata is None or version is None:
        raise _Unusable("no embedded PostgreSQL is available")
    if version[0] != job.live.major:
        raise _Unusable(f"the embedded PostgreSQL is {version[1]}")
    server = embedded.start(pgdata)
    where = f"the embedded PostgreSQL under {pgdata}"
    try:
        with connect(
            server.url, limits=CATALOG, timeout=job.timeout, variable="the embedded PostgreSQL"
        ) as admin:
            return where, _build_on(admin, server.url, where, job)
    finally:
        if server.started:
            embedded.stop(pgdata)


def _run(build: Build, conn: Conn, where: str) -> None:
    """Run ``build``; a migration that fails there is a DriftError naming it."""
    try:
        build(conn)
    except MigrationError as exc:
        name = getattr(exc, "name", None)
        detail = getattr(exc, "detail", None) or exc.message
        what = f"migration {name}" if name else "the applied history"
        raise DriftError(
            f"{what} failed on {where}: {detail}; the shadow cannot be built there (a missing "
            f"role, extension or setting?): fix that, or compare with --expected FILE"
        ) from None
    except psycopg.Error as exc:
        detail = message_of(exc)
        raise DriftError(f"the shadow build failed on {where}: {detail}") from None


@contextmanager
def _throwaway(admin: Conn, server_url: DatabaseUrl, where: str, timeout: float) -> Iterator[Conn]:
    """A new empty database on ``admin``'s server, locked while it lives, dropped after."""
    sweep(admin)
    key, name = _create(admin, where)
    try:
        with connect(
            server_url.with_database(name),
            limits=CATALOG,
            timeout=timeout,
            variable="the shadow database",
        ) as conn:
            yield conn
    finally:
        _drop(admin, name)
        if not admin.closed:
            admin.execute("SELECT pg_advisory_unlock(%s, %s)", (SHADOW_LOCK, key))


def _create(admin: Conn, where: str) -> tuple[int, str]:
    key = secrets.randbelow(2**31)
    name = f"{_PREFIX}{key}"
    admin.execute("SELECT pg_advisory_lock(%s, %s)", (SHADOW_LOCK, key))
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        admin.execute("SELECT pg_advisory_unlock(%s, %s)", (SHADOW_LOCK, key))
        detail = message_of(exc)
        raise DriftError(f"cannot create a shadow database on {where}: {detail}") from None
    log.info("shadow_created", database=name)
    return key, name


def _drop(admin: Conn, name: str) -> bool:
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    try:
        admin.execute(statement)
    except psycopg.Error as exc:  # the next run's sweep will try again
        log.warning("shadow_not_dropped", database=name, detail=message_of(exc))
        return False
    log.info("shadow_dropped", database=name)
    return True


def sweep(admin: Conn) -> list[str]:
    """Drop the throwaway shadows on ``admin``'s server whose creator is gone; their names."""
    params = {"pattern": _SHADOW_NAME, "key": SHADOW_LOCK, "start": len(_PREFIX) + 1}
    orphans = [str(name) for (name,) in admin.execute(_ORPHANS, params).fetchall()]
    swept = [name for name in orphans if _drop(admin, name)]
    if swept:
        log.info("shadows_swept", databases=swept)
    return swept
