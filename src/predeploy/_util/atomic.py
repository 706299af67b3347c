"""Atomic writes: a file is either its old content or its new one, never half of either.

The new content goes to a hidden partial file beside the target (``partial_name``: a run
killed part-way leaves one that the next run sweeps), is flushed to disk, and is renamed
over the target. A failure removes the partial and raises.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from predeploy._util.sweep import partial_name

__all__ = ["write_json", "write_text"]


def write_text(path: Path, text: str, *, partial: Path | None = None, sync: bool = True) -> None:
    """Replace ``path`` with ``text`` (mode 0600) through ``partial`` (default: the
    ``partial_name`` beside it); ``sync`` flushes it to disk before the rename."""
    partial = partial or path.with_name(partial_name(path.name))
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            if sync:
                os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


def write_json(
    path: Path,
    data: Any,
    *,
    indent: int | None = 2,
    partial: Path | None = None,
    sync: bool = True,
) -> None:
    """``data`` as JSON: indented with a final newline, or (``indent=None``) compact."""
    if indent is None:
        text = json.dumps(data, separators=(",", ":"))
    else:
        text = json.dumps(data, indent=indent) + "\n"
    write_text(path, text, partial=partial, sync=sync)
