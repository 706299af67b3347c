"""Running pg_dump into a backup's hidden partial file.

A custom-format dump goes through the ``Tee``: pg_restore reads it whole as it is
written, and its sha256 is taken on the way. With PREDEPLOY_BACKUP_JOBS > 1 it is a
directory dump by parallel workers (checked afterwards by ``verify``). pg_dump waits at
most PREDEPLOY_LOCK_WAIT for a table another session holds; the error then names who. A
schema's backup (a tenant's) passes ``--schema`` with ``--strict-names``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from predeploy.backup.progress import ProgressFn, Reporter
from predeploy.config.parts import BackupSettings
from predeploy.db.catalog import blocked_by
from predeploy.db.connect import Conn
from predeploy.errors import BackupError
from predeploy.programs import pgbin, pgclient
from predeploy.programs import run as programs
from predeploy.programs.tee import Tee

__all__ = ["dump", "prepare", "remove", "schema_pattern"]

# how pg_dump says its --lock-wait-timeout ran out: a statement_timeout around its LOCK
# TABLE (PostgreSQL 9.x to 18), or a lock_timeout / NOWAIT in other versions
_LOCK_WAIT_ENDED = ("statement timeout", "lock timeout", "could not obtain lock")
_TABLE_DONE = re.compile(r'dumping contents of table "(.+)"')


def schema_pattern(schema: str) -> str:
    """``schema`` as a pg_dump pattern that matches it alone: double-quoted (inside quotes,
    ``*``, ``?``, ``.`` and every regular-expression character are literal), ``"`` doubled."""
    return '"' + schema.replace('"', '""') + '"'


def prepare(partial: Path, directory: bool) -> None:
    """Create the target private before pg_dump writes a byte into it."""
    remove(partial)
    if directory:
        partial.mkdir(mode=0o700)
    else:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def remove(path: Path) -> None:
    """Remove a partial dump (a file, or a directory dump)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def dump(
    tools: tuple[pgbin.PgProgram, pgbin.PgProgram],
    conn: Conn,
    partial: Path,
    *,
    settings: BackupSettings,
    tables: int,
    progress: ProgressFn | None,
) -> str | None:
    """Dump ``conn``'s database into ``partial`` (made ready here) as ``conn``'s user; the
    streamed sha256 of a custom-format dump, None for a directory dump. A lock wait that
    ran out names who held the table."""
    params = conn.info.get_parameters()
    with pgclient.client(params, conn.info.password, "predeploy backup") as client:
        prepare(partial, settings.jobs > 1)
        try:
            return _run(tools, client, partial, settings=settings, tables=tables, progress=progress)
        except BackupError as exc:
            if not any(sign in exc.message for sign in _LOCK_WAIT_ENDED):
                raise
            raise BackupError(
                f"backup failed: pg_dump waited PREDEPLOY_LOCK_WAIT ({settings.lock_wait:g}s) "
                f"for a table lock: {blocked_by(conn)}; no backup was kept"
            ) from None


def _run(
    tools: tuple[pgbin.PgProgram, pgbin.PgProgram],
    client: pgclient.ClientRun,
    partial: Path,
    *,
    settings: BackupSettings,
    tables: int,
    progress: ProgressFn | None,
) -> str | None:
    done = [0]

    def on_stderr(line: str) -> None:
        if _TABLE_DONE.search(line):
            done[0] += 1

    args = [f"--lock-wait-timeout={round(settings.lock_wait * 1000)}", "--verbose"]
    if settings.schema is not None:
        args += [f"--schema={schema_pattern(settings.schema)}", "--strict-names"]
    with Reporter("dump", partial, tables, done, progress):
        if settings.jobs > 1:
            _directory(tools[0], client, partial, args, jobs=settings.jobs, on_stderr=on_stderr)
            return None
        return _custom(tools, client, partial, args, on_stderr)


def _directory(
    program: pgbin.PgProgram,
    client: pgclient.ClientRun,
    partial: Path,
    args: list[str],
    *,
    jobs: int,
    on_stderr: Callable[[str], None],
) -> None:
    """A directory dump by ``jobs`` parallel workers."""
    args = [*args, "--format=directory", f"--jobs={jobs}", f"--file={partial}"]
    try:
        programs.run(
            program.path,
            [*args, f"--dbname={client.conninfo}"],
            env=client.env,
            pass_fds=client.pass_fds,
            on_stderr=on_stderr,
            timeout=None,
        )
    except programs.ProgramFailed as exc:
        raise BackupError(f"backup failed: {exc}; no backup was kept") from None


def _custom(
    tools: tuple[pgbin.PgProgram, pgbin.PgProgram],
    client: pgclient.ClientRun,
    partial: Path,
    args: list[str],
    on_stderr: Callable[[str], None],
) -> str:
    """A custom-format dump through the Tee, read whole by pg_restore as it is written."""
    dump_program, restore_program = tools
    tee = Tee(partial)
    made, made_code, read, read_code = tee.run(
        (dump_program.path, ["--format=custom", *args, f"--dbname={client.conninfo}"], client),
        (restore_program.path, ["--file=/dev/null"], programs.child_env()),
        on_stderr,
    )
    if tee.write_error is not None:
        reason = tee.write_error.strerror or str(tee.write_error)
        raise BackupError(f"backup failed: could not write {partial}: {reason}; no backup was kept")
    if made_code != 0:
        raise BackupError(f"backup failed: {made.failure(made_code)}; no backup was kept")
    if read_code != 0:
        raise BackupError(
            f"the dump failed verification: {read.failure(read_code)}; it was removed"
        )
    return tee.sha256.hexdigest()
