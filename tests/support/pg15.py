"""Where PostgreSQL 15's programs are, for the tests that run against a PG 15 server.

`.ci/run` installs PostgreSQL 15 (Debian's postgresql-15), so CI always has it; on any
other machine a missing PostgreSQL 15 skips those tests with the reason, never fails them.
PREDEPLOY_TEST_PG15_BIN names the folder when it is somewhere else.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

__all__ = ["PG15_BIN", "PG15_MISSING", "client_programs_only", "needs_pg15", "require_pg15"]

_LAYOUTS = (
    "/usr/lib/postgresql/15/bin",
    "/usr/pgsql-15/bin",
    "/opt/homebrew/opt/postgresql@15/bin",
)


def _find() -> Path | None:
    named = os.environ.get("PREDEPLOY_TEST_PG15_BIN")
    for folder in (named,) if named else _LAYOUTS:
        candidate = Path(folder)
        if (candidate / "postgres").exists() and _major(candidate) == 15:
            return candidate
    return None


def _major(folder: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(folder / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except OSError:
        return None
    digits = out.split()[-1].split(".")[0] if out.split() else ""
    return int(digits) if digits.isdigit() else None


PG15_BIN = _find()
PG15_MISSING = (
    "needs PostgreSQL 15's programs (Debian: apt-get install postgresql-15; or set "
    "PREDEPLOY_TEST_PG15_BIN); .ci/run installs them"
)


def require_pg15() -> Path:
    """PostgreSQL 15's bin folder; skips the test (fails it in CI) when there is none."""
    if PG15_BIN is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL 15 is missing in CI: {PG15_MISSING}")
        pytest.skip(PG15_MISSING)
    return PG15_BIN


needs_pg15 = pytest.mark.skipif(PG15_BIN is None, reason=PG15_MISSING)


def client_programs_only(folder: Path, bin_dir: Path | None = None) -> Path:
    """A folder like a client-only install's: pg_dump, pg_restore and psql, no server."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("pg_dump", "pg_restore", "psql"):
        (folder / name).symlink_to((bin_dir or require_pg15()) / name)
    return folder
