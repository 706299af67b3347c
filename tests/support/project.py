"""A project's files and a database's schema, as the tests write and read them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol

from predeploy.config.settings import Settings

__all__ = ["MakeSettings", "schema_dump", "write_migrations"]


class MakeSettings(Protocol):
    def __call__(self, env: str = "staging", **values: str) -> Settings: ...


def write_migrations(folder: Path, scripts: dict[str, str | bytes]) -> None:
    """Write ``{name: migration.sql}`` into ``folder``."""
    for name, script in scripts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        path = folder / name / "migration.sql"
        if isinstance(script, bytes):
            path.write_bytes(script)
        else:
            path.write_text(script)


def schema_dump(url: str, *exclude: str) -> str:
    """`pg_dump --schema-only` of ``url`` without the tables ``exclude`` names (patterns)."""
    from predeploy.db import embedded  # noqa: PLC0415

    skip = [arg for pattern in exclude for arg in ("-T", pattern)]
    return subprocess.run(
        [str(embedded.bin_dir() / "pg_dump"), "--schema-only", *skip, "-d", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
