"""Restoring a backup, the mechanism: the dump checked, the tools chosen, the replay.

The restore itself is one transaction: every object the backup lacks is dropped (see
``predeploy.backup.objects``), then the archive is replayed (`pg_restore --clean -f -`,
streamed into `psql --single-transaction`). A failure anywhere leaves the database as it
was. What the caller keeps out of it (the audit table, and the schema that holds it)
survives. A schema's dump (a schema-per-tenant target's, its manifest's ``schema``) replaces
that schema alone: only its objects are dropped or replayed, every other schema is left as
it is. While it runs, a statement of the replay that waits on a lock longer than
PREDEPLOY_LOCK_WAIT is cancelled, and the error names the blocker.

The verb (plan, confirmation, audit row, notification) is ``predeploy.commands.restore``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import structlog

from predeploy._util.sweep import temp_prefix
from predeploy.backup import objects
from predeploy.backup.archive import digest
from predeploy.backup.progress import ProgressFn, Reporter
from predeploy.backup.retention import BackupInfo, backup_at
from predeploy.config.parts import BackupSettings
from predeploy.db.catalog import lock_waiter
from predeploy.db.connect import CATALOG, Conn, Endpoint, connect
from predeploy.db.failures import message_of, translated
from predeploy.errors import BackupError, ConfigError, PredeployError
from predeploy.programs import pgbin, pgclient
from predeploy.programs import run as programs

__all__ = ["Prepared", "check_file", "named", "prepare", "replay"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Prepared:
    """What a replay needs, read before it starts: the tools, the archive's table of
    contents, what the backup lacks (dropped first) and what stands (kept)."""

    pg_restore: Path
    psql: Path
    toc: str
    keep: list[tuple[str, str]]
    extra: list[objects.Extra]
    standing: set[str]


def prepare(
    settings: BackupSettings, conn: Conn, info: BackupInfo, keep: list[tuple[str, str]]
) -> Prepared:
    """The pg_restore (and psql) that can read ``info``, its table of contents, and the
    objects of the database it lacks (``keep``: tables left out of the restore)."""
    server_major = conn.info.server_version // 10000
    pg_restore = _pg_restore(settings, server_major, info)
    toc = programs.output(pg_restore.path, ["--list", str(info.path)], timeout=300)
    with translated(conn, "listing what the backup lacks", error=BackupError):
        scope = info.manifest.schema  # a schema's dump stands for that schema alone
        extra = objects.extras(conn, objects.toc_entries(toc), keep, schema=scope)
        standing = objects.standing(conn, keep)
    psql = pg_restore.path.with_name("psql")
    return Prepared(pg_restore.path, psql, toc, keep, extra, standing)


def replay(
    settings: BackupSettings,
    conn: Conn,
    prepared: Prepared,
    info: BackupInfo,
    *,
    at: Endpoint,
    name: str,
    progress: ProgressFn | None,
) -> None:
    """Drop what the backup lacks and replay it, in one transaction; BackupError (the
    database unchanged) when anything fails. ``at``: where the lock-wait watcher connects."""
    with (
        _list_file(prepared.toc, prepared.keep, prepared.standing) as listing,
        _cancel_lock_waits(at, name, settings.lock_wait),
    ):
        _replay(
            conn,
            tools=(prepared.pg_restore, prepared.psql),
            info=info,
            extra=prepared.extra,
            listing=listing,
            name=name,
            progress=progress,
        )


# psql reads the drops, then the archive, from stdin: one transaction, the first error ends it
_PSQL = ("-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-")


def _replay(
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
            [*_PSQL, f"--dbname={client.conninfo}"],
            env=client.env,
            stdin=pipe.reader,
            pass_fds=client.pass_fds,
        )
        pipe.detach_reader()
        try:
            pipe.write("".join(f"{e.drop};\n" for e in extra).encode())
            _archive(pg_restore, info, listing, pipe, psql=psql_run, on_stderr=on_stderr)
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


def _archive(
    pg_restore: Path,
    info: BackupInfo,
    listing: Path,
    pipe: programs.Pipe,
    *,
    psql: programs.Running,
    on_stderr: Callable[[str], None],
) -> None:
    """The archive (``listing``'s entries of it) as SQL into ``pipe``; a pg_restore that
    fails kills psql first: it must not see the end of a half archive (it would commit)."""
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
    if read_code != 0:
        psql.kill()
        raise BackupError(
            f"restore of {info.path} failed: {read.failure(read_code)}; the database is unchanged"
        )


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


def check_file(info: BackupInfo, where: str, *, default: bool) -> None:
    """The dump must be there and match its manifest's sha256; never fall back. ``where``:
    ``--env ENV`` (``--target NAME``), for the command that lists the backups."""
    which = "the newest backup" if default else "the backup"
    older = (
        f"; restore an older one by naming it with --backup (predeploy backups {where} "
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


def named(where: str, path: Path) -> BackupInfo:
    """The backup at ``path``, in any folder, known by the manifest beside it (``where``:
    ``--env ENV`` (``--target NAME``), for the command that lists the backups)."""
    if not path.exists():
        raise ConfigError(
            f"--backup {path} does not exist: name an existing dump (predeploy backups "
            f"{where} lists the env's)"
        )
    info = backup_at(path)
    if info is None:
        raise BackupError(
            f"{path} is not a predeploy backup (no manifest of it beside it in "
            f"{path.absolute().parent}): name a dump predeploy made (predeploy backups "
            f"{where} lists the env's)"
        )
    return info


def _pg_restore(settings: BackupSettings, server_major: int, info: BackupInfo) -> pgbin.PgProgram:
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
def _cancel_lock_waits(at: Endpoint, application: str, limit: float) -> Iterator[list[str]]:
    """While the block runs, cancel any statement of ``application`` waiting on a lock for
    longer than PREDEPLOY_LOCK_WAIT; yields the blockers that were the cause."""
    cancelled: list[str] = []
    stop = threading.Event()

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
