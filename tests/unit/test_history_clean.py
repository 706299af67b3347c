"""One rule of "is the history clean", named per reader: status --check and health (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from predeploy.migrate import discovery
from predeploy.migrate.history import HistoryRow
from predeploy.migrate.status import compare, for_check, for_health

_NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _row(name: str, checksum: str, *, finished: bool = True) -> HistoryRow:
    return HistoryRow(
        id=name, checksum=checksum, finished_at=_NOW if finished else None, migration_name=name,
        logs=None, rolled_back_at=None, started_at=_NOW, applied_steps_count=1,
    )  # fmt: skip


def _migrations(tmp_path: Path) -> list[discovery.Migration]:
    for i, (name, post) in enumerate(
        [("applied", False), ("edited", False), ("failed", False), ("later", True)]
    ):
        when = datetime(2026, 1, 1, 0, 0, i, tzinfo=UTC)
        discovery.create(tmp_path, name, when, post_deploy=post)
    return discovery.discover(tmp_path)


def test_status_check_counts_everything_not_applied_and_health_only_what_blocks(
    tmp_path: Path,
) -> None:
    """A folder missing on disk fails `status --check` but only warns in health (as in the
    plan); a pending post-deploy migration a deploy waits on is not a health problem."""
    applied, edited, failed, later = _migrations(tmp_path)
    rows = [
        _row(applied.name, applied.checksum),
        _row(edited.name, "0" * 64),
        _row(failed.name, failed.checksum, finished=False),
        _row("20250101000000_gone", "1" * 64),
    ]
    status = compare([applied, edited, failed, later], rows)
    assert for_check(status) == {"pending": 1, "failed": 1, "edited": 1, "missing": 1}
    assert for_health(status) == {"pending": 1, "failed": 1, "edited": 1}
    assert for_health(status, waiting=(later,)) == {"failed": 1, "edited": 1}


def test_a_clean_history_has_no_problem_for_either(tmp_path: Path) -> None:
    """Everything applied: nothing for status --check, nothing for health."""
    found = _migrations(tmp_path)
    status = compare(found, [_row(m.name, m.checksum) for m in found])
    assert for_check(status) == {} and for_health(status) == {}
