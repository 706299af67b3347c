"""The cache folder: answers predeploy could compute again, kept so that it need not.

``<project root>/.predeploy/cache/`` (git-ignored: `predeploy init` adds the entry), else
the user's cache folder (``$XDG_CACHE_HOME/predeploy``, by default ``~/.cache/predeploy``):

    lint/<key>.json     squawk's findings for one file's bytes under one set of options
    programs.json       program versions, by path, file size and modification time

Nothing in it is needed: a missing, unreadable or corrupt entry is a miss, and a folder
that cannot be written only makes the next run do the work again. Entries are written to
a temporary file and renamed, so a concurrent run never reads half of one. Nothing read
from the live database is kept here (table sizes change).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from predeploy._util import atomic

__all__ = ["folder", "probe", "read_json", "user_folder", "write_json"]

PROJECT_FOLDER = Path(".predeploy") / "cache"


def user_folder() -> Path:
    """``$XDG_CACHE_HOME/predeploy``, else ``~/.cache/predeploy``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "predeploy"


def folder(root: Path | None) -> Path:
    """The cache folder of the project at ``root``; the user's without a project."""
    return root / PROJECT_FOLDER if root is not None else user_folder()


def read_json(path: Path) -> Any:
    """What ``path`` holds, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically; a failure is ignored (it is only a cache)."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        os.close(fd)  # a name no other writer (thread or process) has
        atomic.write_json(path, data, indent=None, partial=Path(temp), sync=False)


def probe(program: Path, cache_dir: Path, ask: Callable[[Path], Any]) -> Any:
    """``ask(program)`` (a JSON value, None when it gave no answer), kept in
    ``programs.json`` by the program's path, size and modification time: a program that
    was replaced or upgraded is asked again. Answers of None are not kept."""
    try:
        info = program.stat()
    except OSError:
        return ask(program)
    stamp = [info.st_size, info.st_mtime_ns]
    path = cache_dir / "programs.json"
    known = read_json(path)
    known = known if isinstance(known, dict) else {}
    entry = known.get(str(program))
    if isinstance(entry, dict) and entry.get("stamp") == stamp and "answer" in entry:
        return entry["answer"]
    answer = ask(program)
    if answer is not None:
        fresh = read_json(path)  # another run may have added entries meanwhile
        fresh = fresh if isinstance(fresh, dict) else {}
        fresh[str(program)] = {"stamp": stamp, "answer": answer}
        write_json(path, fresh)
    return answer
