"""The commands' results: each one's JSON (``as_dict``) and the error that is its exit (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from predeploy.backup.dump import BackupResult
from predeploy.commands.backup import BackedUp
from predeploy.commands.notify_test import Sent
from predeploy.commands.status import StatusReport
from predeploy.drift.report import DriftReport
from predeploy.integrations._notify_send import Delivery
from predeploy.migrate.status import Entry, Status


def test_backup_prints_the_whole_backup_not_a_runs_summary_of_it() -> None:
    """`predeploy backup --json` names the manifest, the timings, the tables and the format;
    a run's report (BackupResult.as_dict) names only the dump, its checksum and size."""
    result = BackupResult(
        path=Path("/b/x.dump"), manifest=Path("/b/x.dump.json"), sha256="ab", size=10,
        seconds=1.23456, tables=3, format="custom", dump_seconds=1.0, verify_seconds=0.2,
        created_at=datetime(2026, 1, 1, tzinfo=UTC), pruned=(Path("/b/old.dump"),),
    )  # fmt: skip
    assert BackedUp(result).as_dict() == {
        "path": "/b/x.dump",
        "manifest": "/b/x.dump.json",
        "sha256": "ab",
        "size": 10,
        "seconds": 1.235,
        "dump_seconds": 1.0,
        "verify_seconds": 0.2,
        "tables": 3,
        "format": "custom",
        "pruned": ["/b/old.dump"],
    }


def test_status_fails_only_with_check_and_a_problem() -> None:
    """`status` reports; `status --check` exits 1 only when the history needs attention."""
    no_drift = DriftReport((), "a shadow", "app", "17", compared=4)
    clean = StatusReport("staging", Status(()), [], no_drift, check=True)
    assert clean.error is None and clean.problems() == []
    keys = {"env", "up_to_date", "counts", "migrations", "last_runs", "drift"}
    assert set(clean.as_dict()) == keys and clean.as_dict()["drift"]["drifted"] is False
    assert set(StatusReport("staging", Status(()), []).as_dict()) == keys - {"drift"}
    pending = Status((Entry("1_a", "pending", None, None), Entry("0_gone", "missing", None, None)))
    assert StatusReport("staging", pending, []).error is None
    error = StatusReport("staging", pending, [], check=True).error
    assert error is not None and error.exit_code == 1
    assert error.message == "migrations need attention: 1 pending, 1 missing"


def test_notify_test_fails_when_one_url_failed() -> None:
    """Every delivery is reported; one failed URL makes the command exit 1."""
    ok = Delivery("json://a", True, "", 0.1)
    bad = Delivery("json://b", False, "HTTP 500", 0.2)
    assert Sent([ok]).error is None
    failed = Sent([ok, bad]).error
    assert failed is not None and failed.exit_code == 1
    assert failed.message == "1 of 2 notification URL(s) failed: see above"
    assert Sent([ok, bad]).as_dict() == {"deliveries": [ok.as_dict(), bad.as_dict()]}
