"""backup.manifest and retention's scope: a schema's dump says so; an old manifest is a
whole database's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from predeploy.backup import pgdump
from predeploy.backup.manifest import Manifest
from predeploy.backup.retention import BackupInfo, scope_mismatch

_WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def _info(schema: str | None) -> BackupInfo:
    return BackupInfo(Path("a.dump"), Manifest("a.dump", _WHEN, schema=schema), _WHEN, True)


def test_a_schemas_manifest_names_it_and_reads_back() -> None:
    """The ``schema`` key is written for a schema's dump and read back."""
    written = Manifest("a.dump", _WHEN, schema="acme").as_json()
    assert written["schema"] == "acme"
    assert Manifest.from_json(written).schema == "acme"


def test_a_whole_databases_manifest_has_no_schema_key() -> None:
    """A whole database's manifest is as before (no key); one without it reads as None."""
    written = Manifest("a.dump", _WHEN).as_json()
    assert "schema" not in written
    assert Manifest.from_json({"file": "a.dump", "created_at": _WHEN.isoformat()}).schema is None


@pytest.mark.parametrize(
    ("theirs", "target", "why"),
    [
        (None, None, None),
        ("acme", "acme", None),
        ("acme", "beta", "it holds schema acme, the target is schema beta"),
        ("acme", None, "it holds schema acme alone, the target is the whole database"),
        (None, "acme", "it holds the whole database, the target is schema acme alone"),
    ],
)
def test_scope_mismatch(theirs: str | None, target: str | None, why: str | None) -> None:
    """A backup fits a target only when both stand for the same schema, or both for the
    whole database."""
    assert scope_mismatch(_info(theirs), target) == why


@pytest.mark.parametrize(
    ("schema", "pattern"),
    [("acme", '"acme"'), ('We"ird.s*', '"We""ird.s*"'), ("Tenant_1", '"Tenant_1"')],
)
def test_schema_pattern_matches_the_name_alone(schema: str, pattern: str) -> None:
    """pg_dump's --schema gets the name double-quoted (its pattern characters literal)."""
    assert pgdump.schema_pattern(schema) == pattern
