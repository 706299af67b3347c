"""What a schema target's restore says before and after: schema acme of its database, and
no other schema; a whole database's restore reads as before."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from predeploy.backup.manifest import Manifest
from predeploy.backup.retention import BackupInfo
from predeploy.cli.render_run import render_restore_plan, render_restored
from predeploy.commands.restore import RestorePlan, RestoreResult

_WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
_DUMP = Path("/b/app.acme_1.dump")


def _plan(schema: str | None) -> RestorePlan:
    manifest = Manifest(_DUMP.name, _WHEN, database="app", env="prod", schema=schema)
    info = BackupInfo(_DUMP, manifest, _WHEN, True)
    return RestorePlan(info, "app", "postgresql://db/app", "prod", 2, "1_a", (), schema=schema)


def test_a_schema_targets_plan_names_the_schema_alone() -> None:
    """The plan says schema acme of app is replaced, and no other schema."""
    text = render_restore_plan(_plan("acme"))
    assert text.splitlines()[0].startswith("This replaces schema acme of database app (env prod")
    assert text.splitlines()[0].endswith(", no other schema:")
    assert "Everything written to schema acme of database app since" in text


def test_a_whole_databases_plan_reads_as_before() -> None:
    text = render_restore_plan(_plan(None))
    assert text.splitlines()[0] == "This replaces database app (env prod, postgresql://db/app):"
    assert "schema" not in text


def test_restored_names_the_schema() -> None:
    """The result line, and the JSON's ``schema`` key (only for a schema's restore)."""
    scoped = RestoreResult(_DUMP, "app", 0.25, (), "acme")
    assert render_restored(scoped).startswith("restored schema acme of app from /b/")
    assert scoped.as_dict()["schema"] == "acme"
    assert "schema" not in RestoreResult(_DUMP, "app", 0.25, ()).as_dict()
