"""Checking a dump before it is kept: pg_restore lists every table of the database (of the
schema, for a schema's dump, and nothing of another) and has read the archive whole, and
the file on disk hashes as what pg_dump wrote."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from predeploy.backup import objects
from predeploy.backup.archive import digest, toc_relations
from predeploy.backup.progress import ProgressFn, Reporter
from predeploy.errors import BackupError
from predeploy.programs import pgbin
from predeploy.programs import run as programs

__all__ = ["verify"]


def verify(
    program: pgbin.PgProgram,
    partial: Path,
    tables: Sequence[tuple[str, str, int]],
    progress: ProgressFn | None,
    streamed: str | None,
    *,
    schema: str | None = None,
) -> tuple[str, int]:
    """pg_restore must list every table and have read the archive whole; hash it from disk.

    ``streamed`` is the sha256 of what pg_dump wrote, already read whole by pg_restore:
    the file on disk must hash the same. Without it, pg_restore reads the file now.
    ``schema``: a schema's dump, which must hold that schema and nothing of another.
    Returns (sha256, size).
    """
    _all_listed(program, partial, tables, schema)
    if streamed is None:
        return _read_whole(program, partial, len(tables), progress)
    sha256, size = digest(partial)
    if sha256 != streamed:
        raise BackupError(
            f"the dump on disk differs from what pg_dump wrote (sha256 {sha256[:12]}…, "
            f"written {streamed[:12]}…): check the disk; it was removed"
        )
    return sha256, size


def _all_listed(
    program: pgbin.PgProgram,
    partial: Path,
    tables: Sequence[tuple[str, str, int]],
    schema: str | None,
) -> None:
    try:
        toc = programs.output(program.path, ["--list", str(partial)])
    except programs.ProgramFailed as exc:
        raise BackupError(f"the dump failed verification: {exc}; it was removed") from None
    relations = toc_relations(toc)
    if schema is not None:
        _in_scope(toc, relations, schema)
    missing = [f"{s}.{n}" for s, n, _ in tables if ("TABLE", s, n) not in relations]
    if missing:
        raise BackupError(
            f"the dump failed verification: tables missing from it: "
            f"{', '.join(missing[:5])}; it was removed"
        )


def _in_scope(toc: str, relations: set[tuple[str, str, str]], schema: str) -> None:
    """A schema's dump holds the schema itself and no relation of another one."""
    others = sorted({f"{s}.{n}" for _, s, n in relations if s != schema})
    if ("SCHEMA", "-", schema) not in objects.toc_entries(toc) or others:
        found = f"it holds {', '.join(others[:5])}" if others else "the schema is not in it"
        raise BackupError(
            f"the dump failed verification: it should hold schema {schema} alone, but "
            f"{found}; it was removed"
        )


def _read_whole(
    program: pgbin.PgProgram, partial: Path, tables: int, progress: ProgressFn | None
) -> tuple[str, int]:
    """pg_restore reads ``partial`` whole while it is hashed beside it."""
    hashed: dict[str, tuple[str, int]] = {}
    hasher = threading.Thread(target=lambda: hashed.update(d=digest(partial)), daemon=True)
    hasher.start()
    with Reporter("verify", partial, tables, [tables], progress):
        try:
            programs.run(
                program.path,
                ["--file=/dev/null", str(partial)],
                env=programs.child_env(),
                timeout=None,
            )
        except programs.ProgramFailed as exc:
            raise BackupError(f"the dump failed verification: {exc}; it was removed") from None
        finally:
            hasher.join()
    return hashed["d"]
