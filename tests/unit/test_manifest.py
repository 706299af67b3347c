"""backup.manifest: the typed manifest reads what predeploy wrote and writes it back whole."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from predeploy.backup.manifest import Manifest, PgDump, TableEntry

WRITTEN: dict[str, Any] = {  # the shape backup.dump writes
    "predeploy_version": "1.0",
    "file": "app-20260101T000000Z.dump",
    "format": "custom",
    "sha256": "ab" * 32,
    "size": 1234,
    "created_at": "2026-01-01T00:00:00+00:00",
    "checked_at": "2026-01-01T00:00:05+00:00",
    "seconds": 1.5,
    "env": "prod",
    "reason": "pre-migrate",
    "database": "app",
    "server_version": "16.4",
    "system_identifier": "7400000000000000001",
    "pg_dump": {"path": "/usr/bin/pg_dump", "version": "16.4", "major": 16},
    "migrations": {"latest": "2_add", "applied": 2},
    "tables": [{"schema": "public", "name": "users", "rows_estimate": 10}],
    "verified": True,
    "restore_command": "predeploy restore --env prod --backup /b/app.dump",
}


def test_a_written_manifest_reads_typed_and_writes_back_the_same() -> None:
    manifest = Manifest.from_json(WRITTEN)
    assert manifest.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert manifest.pg_dump == PgDump("/usr/bin/pg_dump", "16.4", 16)
    assert manifest.tables == (TableEntry("public", "users", 10),)
    assert (manifest.latest_migration, manifest.applied_migrations) == ("2_add", 2)
    assert manifest.as_json() == WRITTEN


def test_a_check_and_unknown_keys_survive_a_rewrite() -> None:
    newer = WRITTEN | {"engine": "pg_dump", "check": "MISMATCH"}
    manifest = Manifest.from_json(newer)
    assert manifest.check == "MISMATCH" and manifest.extra == {"engine": "pg_dump"}
    assert dataclasses.replace(manifest, check="ok").as_json() == newer | {"check": "ok"}


def test_an_old_manifest_reads_with_what_it_lacks_as_none() -> None:
    manifest = Manifest.from_json({"file": "a.dump", "created_at": "2025-01-01T00:00:00+00:00"})
    assert manifest.pg_dump is None and manifest.tables == () and manifest.sha256 is None
    assert manifest.verified is False and manifest.check is None


@pytest.mark.parametrize(
    "data",
    [
        [],  # not an object
        {"file": "a.dump"},  # no creation time
        {"created_at": "2025-01-01T00:00:00+00:00"},  # no file
        {"file": "a.dump", "created_at": "yesterday"},
    ],
)
def test_what_is_not_a_manifest_is_refused(data: Any) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        Manifest.from_json(data)
