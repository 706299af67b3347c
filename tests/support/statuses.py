"""Migrations on disk and history rows made by hand, for the tables of the pure core."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from predeploy.migrate.discovery import POST_MARKER, Migration
from predeploy.migrate.history import HistoryRow
from predeploy.migrate.status import Status, compare

__all__ = ["T0", "migration", "row", "status_of"]

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def migration(folder: Path, name: str, sql: str = "SELECT 1;\n") -> Migration:
    (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / name / "migration.sql").write_text(sql)
    return Migration(name, folder / name)


def row(m: Migration | str, kind: str, checksum: str | None = None) -> HistoryRow:
    """A history row: `applied`, `failed` (unfinished, not rolled back) or `rolled_back`."""
    name = m if isinstance(m, str) else m.name
    digest = checksum or (m.checksum if isinstance(m, Migration) else "0" * 64)
    finished = T0 if kind in ("applied", "rolled_back") else None
    rolled = T0 if kind == "rolled_back" else None
    return HistoryRow(name, digest, finished, name, None, rolled, T0, int(finished is not None))


def status_of(tmp_path: Path, spec: str) -> Status:
    """``"name:state ..."``; state pending, post, applied, failed, edited or missing."""
    found, rows = [], []
    for name, state in (pair.split(":") for pair in spec.split()):
        if state == "missing":
            rows.append(row(name, "applied"))
            continue
        sql = f"{POST_MARKER}\nSELECT 1;\n" if state == "post" else "SELECT 1;\n"
        m = migration(tmp_path, name, sql)
        found.append(m)
        if state in ("applied", "failed"):
            rows.append(row(m, state))
        elif state == "edited":
            rows.append(row(m, "applied", "f" * 64))
    return compare(found, rows)
