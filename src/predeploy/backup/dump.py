"""Verified backups: pg_dump into `<PREDEPLOY_BACKUP_DIR>/<env>/`, checked, then named.

A dump is written under a hidden partial name of its own (``.<name>.<pid>.partial``),
read whole by pg_restore while it is written, checked to hold every table of the database
(extension member tables excepted: their data is the extension's) and hashed from disk;
only then is it renamed and its manifest written. A schema-per-tenant target's backup
(``BackupSettings.schema``) dumps that schema alone (``pg_dump --schema``), checked to hold
every table of the schema; its name and manifest say which schema it holds. A dump that
fails any step is removed, so nothing that looks like a backup is ever left behind by a
failure; what a killed run left is swept by the next. One backup runs at a time per
database (an advisory lock; a schema's, per schema), and
pg_dump waits at most PREDEPLOY_LOCK_WAIT for a table another session holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from psycopg import sql

from predeploy import __version__
from predeploy._util import atomic
from predeploy._util.pasted import command
from predeploy._util.sweep import partial_name, sweep_partials, sweep_temp_files, sweep_temp_folders
from predeploy.backup import pgdump, retention
from predeploy.backup.archive import manifest_path
from predeploy.backup.manifest import Manifest, PgDump, TableEntry
from predeploy.backup.progress import Progress, ProgressFn
from predeploy.backup.verify import verify
from predeploy.config.parts import BackupSettings
from predeploy.db.catalog import user_tables
from predeploy.db.connect import Conn, catalog_session
from predeploy.db.failures import translated
from predeploy.db.locks import BACKUP_LOCK, advisory_lock
from predeploy.db.target import Target, system_identifier
from predeploy.errors import BackupError, ConfigError
from predeploy.migrate import history
from predeploy.programs import pgbin

__all__ = ["BACKUP_LOCK", "BackupResult", "Progress", "ProgressFn", "backup", "require_programs"]

log = structlog.get_logger(__name__)
_REASON = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class BackupResult:
    """A verified backup on disk and its manifest."""

    path: Path
    manifest: Path
    sha256: str
    size: int
    seconds: float
    tables: int
    format: str
    dump_seconds: float
    verify_seconds: float
    created_at: datetime
    pruned: tuple[Path, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """What a run's report says of its backup."""
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "size": self.size,
            "created_at": self.created_at.isoformat(),
            "pruned": [str(p) for p in self.pruned],
        }


@dataclass(frozen=True)
class _Facts:
    database: str
    server_version: str
    server_major: int
    tables: list[tuple[str, str, int]]
    latest_migration: str | None
    applied_migrations: int
    system_identifier: str | None


def backup(
    target: Target,
    settings: BackupSettings,
    *,
    reason: str = "manual",
    progress: ProgressFn | None = None,
) -> BackupResult:
    """Dump ``target``'s database (``settings.schema``: only that schema), verify the dump,
    and keep it with its manifest."""
    if not _REASON.match(reason):
        raise ConfigError(
            f"backup reason {reason!r} must be lowercase letters, digits and dashes "
            f"(for example pre-migrate)"
        )
    folder = _folder(settings.folder)
    sweep_partials(folder)
    sweep_temp_folders()
    sweep_temp_files()
    with catalog_session(target.direct, purpose="backup") as conn, _locked(conn, settings):
        with translated(
            conn,
            f"reading what to back up from {conn.info.dbname}",
            error=BackupError,
            grant="the backup needs a user that can read every table (the direct URL's)",
        ):
            facts = _facts(conn, target, settings.schema)
        tools = pgbin.select(settings.pg_bin_dir, facts.server_major)
        result = _make(
            settings,
            conn=conn,
            facts=facts,
            tools=require_programs(tools),
            reason=reason,
            folder=folder,
            progress=progress,
        )
    pruned = retention.prune(settings, keep=result.path)
    return BackupResult(**{**result.__dict__, "pruned": tuple(pruned)})


@contextmanager
def _locked(conn: Conn, settings: BackupSettings) -> Iterator[None]:
    """One backup at a time per database; a schema's backup (a tenant's) holds the key
    shared and its schema's two-key lock: tenants of one database back up side by side."""
    lock = functools.partial(advisory_lock, conn, BACKUP_LOCK, wait=settings.lock_wait)
    with contextlib.ExitStack() as held:
        held.enter_context(lock(purpose="backup", shared=settings.schema is not None))
        if settings.schema is not None:
            held.enter_context(lock(purpose="backup", schema=settings.schema))
        yield


def _make(
    settings: BackupSettings,
    *,
    conn: Conn,
    facts: _Facts,
    tools: tuple[pgbin.PgProgram, pgbin.PgProgram],
    reason: str,
    folder: Path,
    progress: ProgressFn | None,
) -> BackupResult:
    """The dump, verified, under its final name with its manifest."""
    started = time.perf_counter()
    created = datetime.now(UTC)
    stem = f"{_scope_name(facts.database, settings.schema)}_{created:%Y%m%dT%H%M%SZ}_{reason}"
    partial = folder / partial_name(f"{stem}.dump")
    try:
        dumped_at = time.perf_counter()
        streamed = pgdump.dump(
            tools, conn, partial, settings=settings, tables=len(facts.tables), progress=progress
        )
        verify_from = time.perf_counter()
        sha256, size = verify(
            tools[1], partial, facts.tables, progress, streamed, schema=settings.schema
        )
        verify_seconds = time.perf_counter() - verify_from
        final = _claim(partial, folder, stem)
    except BaseException:
        pgdump.remove(partial)
        raise
    seconds = time.perf_counter() - started
    kept = _manifest(settings, facts, tools[0], final=final, reason=reason, created=created)
    kept = dataclasses.replace(kept, sha256=sha256, size=size, seconds=round(seconds, 3))
    return _kept(
        kept,
        final,
        sha256=sha256,
        size=size,
        seconds=seconds,
        dump_seconds=verify_from - dumped_at,
        verify_seconds=verify_seconds,
    )


def _manifest(
    settings: BackupSettings,
    facts: _Facts,
    dump_program: pgbin.PgProgram,
    *,
    final: Path,
    reason: str,
    created: datetime,
) -> Manifest:
    """What a verified dump's manifest says, but for its sha256, size and seconds."""
    return Manifest(
        predeploy_version=__version__,
        file=final.name,
        format="directory" if settings.jobs > 1 else "custom",
        created_at=created,
        checked_at=datetime.now(UTC).isoformat(),
        env=settings.env,
        reason=reason,
        database=facts.database,
        schema=settings.schema,
        server_version=facts.server_version,
        system_identifier=facts.system_identifier,
        pg_dump=PgDump(str(dump_program.path), dump_program.version, dump_program.major),
        latest_migration=facts.latest_migration,
        applied_migrations=facts.applied_migrations,
        tables=tuple(TableEntry(s, n, r) for s, n, r in facts.tables),
        verified=True,
        restore_command=command("restore", *settings.where, "--backup", str(final)),
    )


def _kept(
    kept: Manifest,
    final: Path,
    *,
    sha256: str,
    size: int,
    seconds: float,
    dump_seconds: float,
    verify_seconds: float,
) -> BackupResult:
    """Write the manifest of the verified dump ``final``; what the backup made."""
    manifest = _write_manifest(final, kept)
    log.info(
        "backup_verified",
        path=str(final),
        size=size,
        sha256=sha256,
        seconds=round(seconds, 3),
        tables=len(kept.tables),
    )
    return BackupResult(
        path=final,
        manifest=manifest,
        sha256=sha256,
        size=size,
        seconds=seconds,
        tables=len(kept.tables),
        format=kept.format,
        dump_seconds=dump_seconds,
        verify_seconds=verify_seconds,
        created_at=kept.created_at,
    )


def _claim(partial: Path, folder: Path, stem: str) -> Path:
    """Move ``partial`` to ``<stem>.dump``, or ``<stem>-2.dump``... when that is taken.

    Each name is taken atomically (a hard link, or an empty directory that the rename
    replaces): two backups of same-named databases into one folder in the same second
    (two servers, one PREDEPLOY_BACKUP_DIR) never replace each other.
    """
    for n in range(1, 100):
        final = folder / (f"{stem}.dump" if n == 1 else f"{stem}-{n}.dump")
        if manifest_path(final).exists():
            continue
        try:
            if partial.is_dir():
                final.mkdir(mode=0o700)
                os.replace(partial, final)
            else:
                os.link(partial, final)
                partial.unlink()
        except FileExistsError:
            continue
        return final
    raise BackupError(f"{folder} holds 99 backups named {stem}: remove some")


def _scope_name(database: str, schema: str | None) -> str:
    """What a dump's name starts with: the database, and ``.schema`` for a schema's dump
    (characters a file name should not hold replaced by ``-``)."""
    if schema is None:
        return database
    return f"{database}.{_UNSAFE.sub('-', schema)}"


def _facts(conn: Conn, target: Target, schema: str | None) -> _Facts:
    """What the backup records; ``schema``: only that schema's tables (made empty first
    when it is not there yet, as Prisma makes it: a tenant's first migrate)."""
    if schema is not None:
        _ensure_schema(conn, schema)
    row = conn.execute(
        "SELECT current_database(), current_setting('server_version'),"
        " current_setting('server_version_num')::int / 10000"
    ).fetchone()
    assert row is not None  # noqa: S101 (a SELECT without FROM returns one row)
    tables = [t for t in user_tables(conn) if schema is None or t[0] == schema]
    latest, applied = history.latest_applied(history.read(conn, target.history))
    return _Facts(
        str(row[0]), str(row[1]), int(row[2]), tables, latest, applied, system_identifier(conn)
    )


def _ensure_schema(conn: Conn, schema: str) -> None:
    """Create ``schema`` when missing (looked up first: CREATE ... IF NOT EXISTS needs the
    CREATE privilege even when it exists)."""
    found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    if found is None:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        log.info("backup_schema_created", schema=schema)


def require_programs(tools: pgbin.ToolChoice) -> tuple[pgbin.PgProgram, pgbin.PgProgram]:
    """The chosen pg_dump and pg_restore, or BackupError when none fits the server."""
    if tools.pg_dump is None or tools.pg_restore is None:
        raise BackupError(
            "no pg_dump/pg_restore found: install the PostgreSQL client "
            f"programs (version {tools.server_major}) or set PREDEPLOY_PG_BIN_DIR"
        )
    if tools.pg_dump.major < tools.server_major:
        raise BackupError(
            f"pg_dump {tools.pg_dump.version} ({tools.pg_dump.path}) is older than the server "
            f"(PostgreSQL {tools.server_major}) and cannot dump it: install the version "
            f"{tools.server_major} client programs or set PREDEPLOY_PG_BIN_DIR"
        )
    return tools.pg_dump, tools.pg_restore


def _folder(folder: Path) -> Path:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
        probe = folder / f".predeploy-write-test-{os.getpid()}"
        probe.touch(mode=0o600)
        probe.unlink()
    except OSError as exc:
        raise BackupError(
            f"backup folder {folder} is not writable ({exc.strerror or exc}): fix its "
            f"permissions or set PREDEPLOY_BACKUP_DIR"
        ) from None
    return folder


def _write_manifest(dump: Path, manifest: Manifest) -> Path:
    path = manifest_path(dump)
    atomic.write_json(path, manifest.as_json())
    return path
