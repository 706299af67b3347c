"""The runbook's last resort for a fleet target: a schema target's restore brings back its
schema alone, and says so; a database target's, its whole database."""

from __future__ import annotations

import dataclasses
import shlex
from datetime import UTC, datetime
from pathlib import Path

from predeploy.commands.runbook import TakenBackup, build_runbook
from predeploy.config.fleet import Member
from predeploy.config.settings import Settings, load_settings
from predeploy.migrate.outcome import Applied

BACKUP = TakenBackup(Path("/backups/app.acme_1.dump"), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))


def _runbook(tmp_path: Path, member: Member | None) -> list[str]:
    url = "postgresql://app:s3cret@db.example/app"
    base = {"DATABASE_URL": url, "PREDEPLOY_LOG_DIR": str(tmp_path / "logs")}
    settings: Settings = load_settings("prod", tmp_path, base)
    settings = dataclasses.replace(settings, member=member)
    return build_runbook(
        settings,
        backup=BACKUP,
        applied=[Applied("1_a", 0.1, True, 1)],
        error=None,
        run_id="r1",
        has_down={"1_a": False},
    ).commands


def test_a_schema_targets_restore_says_it_brings_back_that_schema_alone(tmp_path: Path) -> None:
    """Target acme (schema acme): the restore line acts on --target acme and the comment
    says only schema acme's writes are discarded."""
    lines = _runbook(tmp_path, Member(name="acme", schema="acme"))
    text = "\n".join(lines)
    assert "bring schema acme alone back to the moment before this run" in text
    assert "discards every write made to schema acme since 2026-01-02 03:04:05 UTC" in text
    assert "whole database" not in text
    restore = next(shlex.split(line) for line in lines if " restore " in line)
    assert restore[1:] == [
        "restore", "--env", "prod", "--target", "acme", "--backup", str(BACKUP.path), "--yes"
    ]  # fmt: skip


def test_a_database_target_and_a_single_run_restore_the_whole_database(tmp_path: Path) -> None:
    """A database-per-tenant target (and a run without a fleet) restores its whole database."""
    for member in (Member(name="globex", database="globex"), None):
        text = "\n".join(_runbook(tmp_path, member))
        assert "bring the whole database back" in text
        assert "discards every write made since 2026-01-02 03:04:05 UTC" in text
        assert "schema" not in text
