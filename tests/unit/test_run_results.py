"""The results of the runs that change a database shape their own JSON and carry the error
the CLI raises (pure): restore, maintenance, deploy's runbook."""

from __future__ import annotations

from pathlib import Path

from predeploy.commands.deploy import DeployReport
from predeploy.commands.maintenance import MaintenanceReport
from predeploy.commands.migrate_report import Report
from predeploy.commands.restore import RestoreResult
from predeploy.commands.runbook import Runbook
from predeploy.errors import BackupError


def test_restore_says_what_it_replaced_and_never_fails_once_returned() -> None:
    result = RestoreResult(Path("/b/x.dump"), "app", 1.23456, ("table public.newer",))
    assert result.as_dict() == {
        "backup": "/b/x.dump",
        "database": "app",
        "seconds": 1.235,
        "dropped": ["table public.newer"],
    }
    assert result.error is None


def test_maintenance_exits_with_its_first_failed_step_or_1_or_0() -> None:
    assert MaintenanceReport("prod").error is None
    failed = MaintenanceReport("prod", errors=[BackupError("pg_dump failed: disk full")])
    error = failed.error
    assert error is not None
    assert (error.message, error.exit_code) == (
        "maintenance needs attention: pg_dump failed: disk full",
        4,
    )
    assert failed.as_dict()["exit_code"] == 4


def test_a_deploy_hands_over_its_runbook_else_its_migrate_phases() -> None:
    """Its JSON names the deploy's own runbook; the operator is handed the migrate phase's
    when the deploy wrote none."""
    phase = Report(env="prod")
    phase.runbook = Runbook(["# undo it:", "predeploy rollback --env prod --yes"], None)
    report = DeployReport(env="prod", migrate=phase)
    assert report.runbook is phase.runbook
    assert report.as_dict()["runbook"] == []
    own = Runbook(["# the deploy's"], Path("/logs/x.runbook"))
    report.own_runbook = own
    assert report.runbook is own
    assert report.as_dict()["runbook_path"] == "/logs/x.runbook"
