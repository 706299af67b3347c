"""The real Prisma CLI, run by tests/data/tools/prisma-check.sh."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["PRISMA_CHECK", "prisma_checker", "prisma_run"]

PRISMA_CHECK = Path(__file__).resolve().parents[1] / "data" / "tools" / "prisma-check.sh"


def prisma_checker() -> Path:
    """The Prisma checker; CI must have node and npm (it installs Prisma from the registry)."""
    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("CI"):
            pytest.fail("node and npm are required in CI for the Prisma compatibility tests")
        pytest.skip("node/npm not installed: Prisma compatibility not checked")
    assert PRISMA_CHECK.is_file(), f"{PRISMA_CHECK} is missing"
    return PRISMA_CHECK


def prisma_run(
    checker: Path, url: str, folder: Path, command: str
) -> subprocess.CompletedProcess[str]:
    """The checker's ``command`` (status, deploy, ...) on ``url`` with ``folder``'s migrations."""
    return subprocess.run(
        ["bash", str(checker), url, str(folder)],
        env={**os.environ, "PRISMA_CHECK_COMMAND": command},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
