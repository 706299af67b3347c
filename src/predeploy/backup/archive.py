"""Dump files on disk: their manifest's path, their digest and size, their table of contents."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

__all__ = ["digest", "manifest_path", "size_of", "toc_relations"]

# `pg_restore --list`: "215; 1259 16386 TABLE public users owner"; names may hold spaces,
# the owner is one word or empty
_TOC_LINE = re.compile(
    r"^\d+; \d+ \d+ (TABLE(?! DATA)|VIEW|MATERIALIZED VIEW|FOREIGN TABLE) (\S+) (.+) (\S*)$"
)


def manifest_path(dump: Path) -> Path:
    return dump.with_name(dump.name + ".json")


def digest(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a dump read from disk; a directory hashes its files in order."""
    if path.is_file():
        return _file_digest(path)
    outer, total = hashlib.sha256(), 0
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        file_sha, size = _file_digest(child)
        outer.update(f"{child.relative_to(path)}\0{file_sha}\n".encode())
        total += size
    return outer.hexdigest(), total


def toc_relations(toc: str) -> set[tuple[str, str, str]]:
    """(kind, schema, name) of every table, view and materialized view in a `pg_restore -l`."""
    found = set()
    for line in toc.splitlines():
        match = _TOC_LINE.match(line)
        if match:
            kind, schema, name, _owner = match.groups()
            found.add((kind, schema, name))
    return found


def _file_digest(path: Path) -> tuple[str, int]:
    with path.open("rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest(), path.stat().st_size


def size_of(path: Path) -> int:
    """Bytes of a dump file, or of all files in a dump directory (0 if it is gone)."""
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0
