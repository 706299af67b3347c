"""Restoring a verified backup: checked first, applied whole, nothing newer left behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import structlog
from psycopg import sql

from predeploy import audit
from predeploy.backup.archive import digest, toc_relations
from predeploy.backup.progress import ProgressFn, Reporter
from predeploy.backup.retention import BackupInfo, list_backups, newest_verified
from predeploy.config.dburl import DatabaseUrl
from predeploy.config.settings import Settings
from predeploy.errors import BackupError, PredeployError
from predeploy.log import current_run_id
from predeploy.migrate import history
from predeploy.migrate.lock import migrate_session
from predeploy.postgres import pgbin
from predeploy.postgres import programs as pgrun
from predeploy.postgres.sessions import Conn, connect, target_url

__all__ = ["RestorePlan", "RestoreResult", "plan", "restore"]

log = structlog.get_logger(__name__)
_RELATIONS = """
SELECT n.nspname, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
  AND NOT c.relispartition
"""
_LOCK_WAIT = """
SELECT l.pid, pg_blocking_pids(l.pid)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted AND a.application_name = %s
  AND l.waitstart < now() - make_interval(secs => %s)
LIMIT 1
"""
_DROP = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE"}


@dataclass(frozen=True)
class RestorePlan:
    """What a restore will replace, for the operator to confirm."""

    backup: BackupInfo
    database: str
    target: str
    current_tables: int
    current_latest_migration: str | None


@dataclass(frozen=True)
class RestoreResult:
    backup: Path
    database: str
    seconds: float
    dropped: tuple[str, ...]


def plan(settings: Settings, path: Path | None) -> RestorePlan:
    """The backup to restore (the newest verified one by default) and what it replaces."""
    info = newest_verified(settings) if path is None else _named(settings, path)
    url, variable = target_url(settings, direct=True)
    with connect(url, timeout=settings.connect_timeout, variable=variable) as conn:
        relations = conn.execute(_RELATIONS).fetchall()
        latest, _ = history.latest_applied(history.read(conn, settings.migrations_table))
    return RestorePlan(
        backup=info,
        database=url.database or "",
        target=str(url),
        current_tables=sum(1 for r in relations if r[2] in ("r", "p")),
        current_latest_migration=latest,
    )


def restore(
    settings: Settings, chosen: RestorePlan, progress: ProgressFn | None = None
) -> RestoreResult:
    """Restore ``chosen`` into the env's database (the caller has confirmed)."""
    info = chosen.backup
    sha256, _ = digest(info.path)
    if sha256 != info.manifest.get("sha256"):
        raise BackupError(
            f"{info.path} does not match its manifest's sha256 (it changed after it was "
            f"verified): not restoring it; pick another with --backup"
        )
    url, variable = target_url(settings, direct=True)
    started = time.perf_counter()
    with migrate_session(settings, url, variable, "restore") as conn:
        server_major = conn.info.server_version // 10000
        program = _pg_restore(settings, server_major, info)
        directory = info.manifest.get("format") == "directory"
        mode = [f"--jobs={max(2, settings.backup_jobs)}"] if directory else ["--single-transaction"]
        log.info("restore_started", backup=str(info.path), database=chosen.database)
        tables = len(info.manifest.get("tables") or [])
        done = [0]

        def on_stderr(line: str) -> None:
            if "processing data for table" in line:
                done[0] += 1

        args = ["--clean", "--if-exists", "--exit-on-error", "--verbose", *mode]
        name = f"predeploy restore {current_run_id()}"
        with (
            pgrun.client(url, name) as client,
            Reporter("restore", None, tables, done, progress),
            # a table the application holds must not hang the restore (its archive sets
            # lock_timeout = 0): cancel a wait longer than PREDEPLOY_LOCK_WAIT, and the single
            # transaction leaves the database as it was
            _cancel_lock_waits(url, name, settings.lock_wait) as cancelled,
        ):
            try:
                pgrun.run(
                    program.path,
                    [*args, f"--dbname={client.conninfo}", str(info.path)],
                    env=client.env,
                    on_stderr=on_stderr,
                )
            except pgrun.ProgramFailed as exc:
                then = (
                    "a parallel restore is not atomic: check the database"
                    if directory
                    else "the database is unchanged"
                )
                hint = (
                    f" ({cancelled[0]} held a table's lock longer than PREDEPLOY_LOCK_WAIT "
                    f"({settings.lock_wait:g}s): stop the application, then restore again)"
                    if cancelled
                    else ""
                )
                raise BackupError(f"restore of {info.path} failed: {exc}; {then}{hint}") from None
        dropped = _drop_newer(conn, program, info.path)
        run = audit.Run(
            run_id=current_run_id(),
            command="restore",
            env=settings.env,
            root=settings.root,
            backup_path=str(info.path),
            backup_sha256=str(info.manifest.get("sha256")),
        )
        # the audit table came back as it was in the backup: this row is written after it
        audit.record(conn, settings.audit_table, run, "restored", None)
    seconds = time.perf_counter() - started
    log.info("restore_done", backup=str(info.path), seconds=round(seconds, 3), dropped=dropped)
    return RestoreResult(info.path, chosen.database, seconds, tuple(dropped))


@contextmanager
def _cancel_lock_waits(url: DatabaseUrl, application: str, limit: float) -> Iterator[list[str]]:
    """While the block runs, cancel any statement of ``application`` waiting on a lock for
    longer than ``limit`` seconds; yields the blockers that were the cause."""
    cancelled: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        try:
            with connect(url, timeout=5, application_name="predeploy restore watch") as spy:
                while not stop.wait(0.25):
                    row = spy.execute(_LOCK_WAIT, (application, limit)).fetchone()
                    if row is not None:
                        pid, blockers = row
                        spy.execute("SELECT pg_cancel_backend(%s)", (pid,))
                        cancelled.append(f"pid {', '.join(map(str, blockers or [])) or '?'}")
                        log.warning("restore_lock_wait_cancelled", blocked_by=blockers)
                        return
        except (PredeployError, psycopg.Error) as exc:
            log.warning("restore_watch_failed", detail=str(exc).splitlines()[0])

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield cancelled
    finally:
        stop.set()
        thread.join(timeout=5)


def _named(settings: Settings, path: Path) -> BackupInfo:
    wanted = path.resolve()
    for info in list_backups(settings):
        if info.path.resolve() == wanted:
            if not info.present:
                raise BackupError(f"{path} is missing or its size differs from its manifest")
            return info
    raise BackupError(
        f"{path} is not a predeploy backup of env {settings.env} (no manifest beside it in "
        f"{settings.backup_dir / settings.env}): list them with invoke backups"
    )


def _pg_restore(settings: Settings, server_major: int, info: BackupInfo) -> pgbin.PgProgram:
    program = pgbin.select(settings.pg_bin_dir, server_major).pg_restore
    made_by = info.manifest.get("pg_dump") or {}
    needed = int(made_by.get("major", 0))
    if program is None or program.major < needed:
        found = f"pg_restore {program.version}" if program else "no pg_restore"
        raise BackupError(
            f"{found} cannot read a dump made by pg_dump {made_by.get('version')}: install the "
            f"version "
            f"{needed} client programs or set PREDEPLOY_PG_BIN_DIR"
        )
    return program


def _drop_newer(conn: Conn, program: pgbin.PgProgram, dump: Path) -> list[str]:
    """Drop the relations that did not exist at the backup's moment."""
    toc = pgrun.run_output(program.path, ["--list", str(dump)])
    known = {(schema, name) for _, schema, name in toc_relations(toc)}
    dropped = []
    with conn.transaction():
        for schema, name, kind in conn.execute(_RELATIONS).fetchall():
            if (schema, name) in known:
                continue
            conn.execute(
                sql.SQL("DROP {} IF EXISTS {} CASCADE").format(
                    sql.SQL(_DROP[kind]), sql.Identifier(schema, name)
                )
            )
            dropped.append(f"{schema}.{name}")
    return dropped
