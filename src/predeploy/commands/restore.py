"""Restoring a backup: checked first, applied whole and atomically, nothing newer left.

The plan (shown before the typed confirmation) names the backup, its database, env,
time and migration state, and what it replaces. A backup is refused when its checksum
does not match its manifest (restore never falls back to another one on its own), and
when its manifest names another database, env or server, unless ``--other-database``.

The restore itself is one transaction: every object the backup lacks is dropped (see
``predeploy.backup.objects``), then the archive is replayed (`pg_restore --clean -f -`,
streamed into `psql --single-transaction`). A failure anywhere leaves the database as it
was. The audit table is kept out of it, and so is the schema that holds it (Prisma's
``?schema=``, or public): the trail of runs survives a restore, and so does the marker
of a protected env on it (``predeploy.db.protection``); a protected env marks it again after
the replay.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import structlog

from predeploy._util.sweep import sweep_temp_files, temp_prefix
from predeploy.backup import objects
from predeploy.backup.archive import digest
from predeploy.backup.progress import ProgressFn, Reporter
from predeploy.backup.retention import BackupInfo, backup_at, mismatches, newest
from predeploy.config.settings import Settings
from predeploy.db import audit, protection
from predeploy.db import target as db_target
from predeploy.db.catalog import lock_waiter, user_tables
from predeploy.db.connect import CATALOG, Conn, Endpoint, catalog_session, connect, refuse_standby
from predeploy.db.failures import message_of, translated
from predeploy.db.locks import migrate_session
from predeploy.errors import (
    BackupError,
    ConfigError,
    PredeployError,
    interrupted,
)
from predeploy.migrate import history
from predeploy.migrate.privileges import check_bookkeeping
from predeploy.programs import pgbin, pgclient
from predeploy.programs import run as programs

__all__ = ["RestorePlan", "RestoreResult", "plan", "refused", "restore"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RestorePlan:
    """What a restore will replace, for the operator to confirm."""

    backup: BackupInfo
    database: str
    target: str
    env: str
    current_tables: int
    current_latest_migration: str | None
    mismatches: tuple[str, ...]  # what the manifest says differently from the target
    policy: str = ""  # the policy that applies to the target, and why


@dataclass(frozen=True)
class RestoreResult:
    backup: Path
    database: str
    seconds: float
    dropped: tuple[str, ...]


def plan(
    settings: Settings, path: Path | None, *, other_database: bool = False, run_id: str = ""
) -> RestorePlan:
    """The backup to restore (the newest of this database by default), checked, and what it
    replaces; a backup of another database is refused, with an audit row (``refused``), and
    so is a damaged or missing one (with its failure notification too)."""
    named = None if path is None else _named(settings, path)
    target = db_target.of(settings)
    url, table = target.url, target.history
    with catalog_session(target.direct, purpose="restore") as conn:
        refuse_standby(conn)
        with translated(conn, f"reading {conn.info.dbname} before the restore", error=BackupError):
            tables = user_tables(conn)
            latest, _ = history.latest_applied(history.read(conn, table))
        identity = db_target.identify(conn, target)
        database, identifier = identity.database, identity.system_identifier
        policy = protection.policy_of(target, conn)
    info = named or newest(settings.backup, database, identifier)  # by default: this database's
    try:
        _check_file(info, settings.env, default=named is None)
    except BackupError as damaged:  # a damaged backup is news: its row, and its message
        _refused(settings, target, info, damaged, run_id)
        _announce(settings, info, damaged, protected=policy.protected)
        raise
    found = mismatches(info, settings.env, database, identifier)
    if found and not other_database:
        error = BackupError(
            f"{info.path} is not a backup of this database: {'; '.join(found)}; nothing "
            f"was restored (pass --other-database to restore it into {database} anyway)"
        )
        error.refused_by = "another database's backup"
        _refused(settings, target, info, error, run_id)
        raise error
    return RestorePlan(
        backup=info,
        database=database,
        target=str(url),
        env=settings.env,
        current_tables=len(tables),
        current_latest_migration=latest,
        mismatches=tuple(found),
        policy=policy.describe(),
    )


def restore(
    settings: Settings, chosen: RestorePlan, progress: ProgressFn | None = None, run_id: str = ""
) -> RestoreResult:
    """Restore ``chosen`` into the env's database (the caller has confirmed)."""
    info = chosen.backup
    target = db_target.of(settings)
    history_table, audit_table = target.history, target.audit
    started = time.perf_counter()
    sweep_temp_files()  # the list files of restores killed with SIGKILL
    with migrate_session(target, "restore", wait=settings.lock_wait) as conn:
        refuse_standby(conn)
        with translated(conn, "reading what the database remembers of its env"):
            policy = protection.policy_of(target, conn, say=False)  # the plan said it
        # its audit row is written after the replay: a missing GRANT is said before it
        check_bookkeeping(conn, history_table, audit_table, needs=(), then="nothing was restored")
        server_major = conn.info.server_version // 10000
        pg_restore = _pg_restore(settings, server_major, info)
        psql = pg_restore.path.with_name("psql")
        toc = programs.output(pg_restore.path, ["--list", str(info.path)], timeout=300)
        keep = [(audit_table.schema, audit_table.name)]
        with translated(conn, "listing what the backup lacks", error=BackupError):
            extra = objects.extras(conn, objects.toc_entries(toc), keep)
            standing = objects.standing(conn, keep)
        log.info(
            "restore_started", backup=str(info.path), database=chosen.database, drops=len(extra)
        )
        name = f"predeploy restore {run_id}".strip()
        with (
            _audited(settings, audit_table, conn, _run(settings, info, run_id), info),
            _list_file(toc, keep, standing) as listing,
            _cancel_lock_waits(target.direct, name, settings),
        ):
            _replay(
                settings,
                conn,
                tools=(pg_restore.path, psql),
                info=info,
                extra=extra,
                listing=listing,
                name=name,
                progress=progress,
            )
        if policy.marks:  # the replay may carry the backup's own marker: this run's wins
            protection.mark(conn, audit_table, env=settings.env, command="restore", run_id=run_id)
    seconds = time.perf_counter() - started
    dropped = tuple(str(e) for e in extra)
    log.info("restore_done", backup=str(info.path), seconds=round(seconds, 3), dropped=dropped)
    _announce(settings, info, None, protected=policy.protected)
    return RestoreResult(info.path, chosen.database, seconds, dropped)


def refused(settings: Settings, chosen: RestorePlan, error: PredeployError, run_id: str) -> None:
    """The audit row of a restore refused once its database was read: its confirmation
    declined, or impossible (no terminal)."""
    _refused(settings, db_target.of(settings), chosen.backup, error, run_id)


def _refused(
    settings: Settings,
    target: db_target.Target,
    info: BackupInfo,
    error: PredeployError,
    run_id: str,
) -> None:
    table = target.audit
    try:
        with (
            catalog_session(target.direct, purpose="audit") as conn,
            translated(conn, "writing the audit row"),
        ):
            audit.record(conn, table, _run(settings, info, run_id), audit.outcome_of(error),
                         error.message)  # fmt: skip
    except PredeployError as exc:
        log.warning("audit_not_recorded", detail=str(exc))


def _run(settings: Settings, info: BackupInfo, run_id: str) -> audit.Run:
    return audit.Run.of(
        settings,
        "restore",
        run_id,
        backup_path=str(info.path),
        backup_sha256=str(info.manifest.sha256),
    )


@contextmanager
def _audited(
    settings: Settings, table: history.Table, conn: Conn, run: audit.Run, info: BackupInfo
) -> Iterator[None]:
    """The restore's audit row (in ``table``) and notification: restored, interrupted
    (SIGINT, SIGTERM) or failed."""
    try:
        yield
    except (PredeployError, KeyboardInterrupt) as exc:
        failed = exc if isinstance(exc, PredeployError) else interrupted(exc, "restoring")
        audit.record(conn, table, run, audit.outcome_of(failed), failed.message)
        _announce(settings, info, failed)
        raise
    audit.record(conn, table, run, "restored", None)


def _announce(
    settings: Settings,
    info: BackupInfo,
    error: PredeployError | None,
    *,
    protected: bool | None = None,
) -> None:
    from predeploy.commands.announce import announce  # noqa: PLC0415 (only with notifications on)

    report = {
        "env": settings.env,
        "outcome": "failed" if error else "ok",
        "error": error.message if error else None,
        "backup": {"path": str(info.path)},
    }
    exit_code = error.exit_code if error else 0
    for warning in announce(
        settings,
        "restore",
        report,
        changed=error is None,
        exit_code=exit_code,
        protected=protected,
    ):
        log.warning("notification_warning", detail=warning)


def _replay(
    settings: Settings,
    conn: Conn,
    *,
    tools: tuple[Path, Path],
    info: BackupInfo,
    extra: list[objects.Extra],
    listing: Path,
    name: str,
    progress: ProgressFn | None,
) -> None:
    """The drops and the archive, streamed into one psql transaction."""
    pg_restore, psql = tools
    preamble = "".join(f"{e.drop};\n" for e in extra).encode()
    tables = len(info.manifest.tables)
    done = [0]

    def on_stderr(line: str) -> None:
        if "processing data for table" in line:
            done[0] += 1

    params = {**conn.info.get_parameters(), "options": "-c client_min_messages=warning"}
    with (
        pgclient.client(params, conn.info.password, name) as client,
        Reporter("restore", None, tables, done, progress),
    ):
        pipe = programs.Pipe()
        psql_run = programs.start(
            psql,
            [
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-f",
                "-",
                f"--dbname={client.conninfo}",
            ],
            env=client.env,
            stdin=pipe.reader,
            pass_fds=client.pass_fds,
        )
        pipe.detach_reader()
        try:
            pipe.write(preamble)
            read = programs.start(
                pg_restore,
                [
                    "--clean",
                    "--if-exists",
                    "--verbose",
                    f"--use-list={listing}",
                    "--file=-",
                    str(info.path),
                ],
                env=programs.child_env(),
                stdout=pipe,
                on_stderr=on_stderr,
            )
            read_code = read.wait()
            if read_code != 0:  # psql must not see the end of a half archive: it would commit
                psql_run.kill()
                raise BackupError(
                    f"restore of {info.path} failed: {read.failure(read_code)}; the database "
                    f"is unchanged"
                )
            pipe.close()
            code = psql_run.wait()
        except BaseException:
            psql_run.kill()
            _end_replay(conn, name)
            raise
        finally:
            pipe.close()
    if code != 0:
        failure = psql_run.failure(code)
        raise BackupError(f"restore of {info.path} failed: {failure}; the database is unchanged")


def _end_replay(conn: Conn, name: str) -> None:
    """End the killed psql's server session: one waiting for a lock does not notice its
    client is gone, and would go on holding what it dropped (the application's tables)
    until that lock came, then roll back."""
    with contextlib.suppress(psycopg.Error):
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (name,),
        )


def _check_file(info: BackupInfo, env: str, *, default: bool) -> None:
    """The dump must be there and match its manifest's sha256; never fall back."""
    which = "the newest backup" if default else "the backup"
    older = (
        f"; restore an older one by naming it with --backup (predeploy backups --env {env} "
        f"--check lists them)"
    )
    error = None
    if not info.path.exists():
        error = BackupError(f"{which} {info.path} is missing{older}")
        error.refused_by = "missing backup"
    else:
        sha256, size = digest(info.path)
        if sha256 != info.manifest.sha256 or size != info.manifest.size:
            error = BackupError(
                f"{which} {info.path} is damaged (its sha256 or size differs from its "
                f"manifest): not restoring it{older}"
            )
            error.refused_by = "damaged backup"
    if error is not None:
        raise error


def _named(settings: Settings, path: Path) -> BackupInfo:
    """The backup at ``path``, in any folder, known by the manifest beside it."""
    if not path.exists():
        raise ConfigError(
            f"--backup {path} does not exist: name an existing dump (predeploy backups "
            f"--env {settings.env} lists the env's)"
        )
    info = backup_at(path)
    if info is None:
        raise BackupError(
            f"{path} is not a predeploy backup (no manifest of it beside it in "
            f"{path.absolute().parent}): name a dump predeploy made (predeploy backups "
            f"--env {settings.env} lists the env's)"
        )
    return info


def _pg_restore(settings: Settings, server_major: int, info: BackupInfo) -> pgbin.PgProgram:
    program = pgbin.select(settings.pg_bin_dir, server_major).pg_restore
    made_by = info.manifest.pg_dump
    needed, version = (made_by.major, made_by.version) if made_by else (0, None)
    if program is None or program.major < needed or not program.path.with_name("psql").is_file():
        found = f"pg_restore {program.version}" if program else "no pg_restore"
        raise BackupError(
            f"{found} (with psql beside it) cannot read a dump made by pg_dump "
            f"{version}: install the version {needed} client programs or set "
            f"PREDEPLOY_PG_BIN_DIR"
        )
    return program


@contextmanager
def _list_file(toc: str, keep: list[tuple[str, str]], standing: set[str]) -> Iterator[Path]:
    """The archive's table of contents for `pg_restore -L` (``objects.replayed``)."""
    text = objects.replayed(toc, keep, standing)
    fd, name = tempfile.mkstemp(prefix=temp_prefix(), suffix=".list")  # sweep_temp_files
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


@contextmanager
def _cancel_lock_waits(at: Endpoint, application: str, settings: Settings) -> Iterator[list[str]]:
    """While the block runs, cancel any statement of ``application`` waiting on a lock for
    longer than PREDEPLOY_LOCK_WAIT; yields the blockers that were the cause."""
    cancelled: list[str] = []
    stop = threading.Event()
    limit = settings.lock_wait

    def watch() -> None:
        try:
            with connect(
                at.url,
                limits=CATALOG,
                timeout=at.timeout,
                variable=at.variable,
                application_name="predeploy restore watch",
            ) as spy:
                while not stop.wait(0.25):
                    row = lock_waiter(spy, application, limit)
                    if row is not None:
                        pid, blockers = row
                        # noted before the cancel: the restore fails at once, and its error
                        # must already find the cause
                        cancelled.append(f"pid {', '.join(map(str, blockers or [])) or '?'}")
                        spy.execute("SELECT pg_cancel_backend(%s)", (pid,))
                        log.warning("restore_lock_wait_cancelled", blocked_by=blockers)
                        return
        except (PredeployError, psycopg.Error) as exc:
            log.warning("restore_watch_failed", detail=message_of(exc))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield cancelled
    except BackupError as exc:
        if cancelled:
            raise BackupError(
                f"{exc.message} ({cancelled[0]} held a table's lock longer than "
                f"PREDEPLOY_LOCK_WAIT ({limit:g}s): stop the application, then restore again)"
            ) from None
        raise
    finally:
        stop.set()
        with contextlib.suppress(RuntimeError):
            thread.join(timeout=5)
