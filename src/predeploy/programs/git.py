"""The project's git revision, for the audit row and notifications: git through the one
runner (imported only when git is there, so that a run outside a checkout loads no `sh`)."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

__all__ = ["revision"]


@functools.lru_cache(maxsize=8)
def revision(root: Path) -> str | None:
    """The project's git revision (with +dirty when it has changes), if it is a checkout."""
    git = shutil.which("git")
    if git is None:
        return None
    from predeploy.programs import run as programs  # noqa: PLC0415 (sh only when a program runs)

    env = programs.child_env({"GIT_OPTIONAL_LOCKS": "0"})
    try:
        head = programs.output(
            Path(git), ["-C", str(root), "rev-parse", "HEAD"], env=env, timeout=5
        )
        dirty = programs.output(
            Path(git), ["-C", str(root), "status", "--porcelain"], env=env, timeout=5
        )
    except programs.ProgramFailed:
        return None
    head = head.strip()
    return head + ("+dirty" if dirty.strip() else "")
