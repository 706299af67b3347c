"""`predeploy ARGS` as a user runs it: a subprocess in the project, no terminal, no stdin."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from support.environ import clean_environ

__all__ = ["Cli", "run_invoke"]


class Cli(Protocol):
    def __call__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> subprocess.CompletedProcess[str]: ...


def run_invoke(
    project: Path,
    *args: str,
    env: dict[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`python -m predeploy ARGS` in ``project`` with the clean environment plus ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "predeploy", *args],
        cwd=project,
        env=clean_environ(**(env or {})),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=preexec,
        start_new_session=True,  # never the suite's terminal: a prompt would wait there
    )
