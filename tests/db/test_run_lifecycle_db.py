"""The run lifecycle against the suite's PostgreSQL: the audit row each end of a run
writes (on the run's own session, or one of its own), masked, and never raised over the
run's own error (commands/run.py)."""

from __future__ import annotations

import signal
from typing import Any

import psycopg
import pytest
import structlog

from predeploy.commands.run import Lifecycle
from predeploy.db import target
from predeploy.db.connect import catalog_session
from predeploy.errors import MigrationError, Refused, Terminated
from support.project import MakeSettings


def _rows(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            "SELECT run_id, command, env, outcome, detail, migrations, backup_path"
            " FROM predeploy_runs ORDER BY id"
        )
        keys = [c.name for c in cur.description or []]
        return [dict(zip(keys, row, strict=True)) for row in cur.fetchall()]


@pytest.mark.parametrize(
    ("raised", "outcome", "detail"),
    [
        (
            Refused("declined: nothing was undone"),
            "refused: confirmation",
            "declined: nothing was undone",
        ),
        (MigrationError("no down.sql for 1_a"), "failed", "no down.sql for 1_a"),
        (Terminated(signal.SIGTERM), "interrupted", "stopped by SIGTERM while rolling back"),
    ],
)
def test_a_run_stopped_in_a_recorded_block_leaves_its_row_and_raises_what_stopped_it(
    make_settings: MakeSettings,
    database_url: str,
    raised: BaseException,
    outcome: str,
    detail: str,
) -> None:
    settings = make_settings("staging")
    life = Lifecycle.start(settings, "rollback", "run-7")
    with (
        catalog_session(target.of(settings).direct, purpose="test") as conn,
        pytest.raises(type(raised)) as caught,
        life.recorded("rolling back", conn),
    ):
        raise raised
    assert caught.value is raised  # the signal is raised as it came: the CLI exits with it
    (row,) = _rows(database_url)
    assert (row["run_id"], row["command"], row["env"]) == ("run-7", "rollback", "staging")
    assert (row["outcome"], row["detail"]) == (outcome, detail)


def test_the_end_of_a_run_writes_its_row_in_a_session_of_its_own_masked(
    make_settings: MakeSettings, database_url: str
) -> None:
    settings = make_settings("staging")
    life = Lifecycle.start(settings, "migrate", "run-8", steps=[])
    secret = settings.migration_url.password if settings.migration_url else None
    assert secret
    with life.ending(lambda: "migrating"), life.step("apply"):
        raise MigrationError(f"role failed: password {secret} rejected")
    life.trail.migrations.append({"name": "1_a", "seconds": 0.1})
    life.record(detail=str(life.error))
    life.error = None
    life.record(changed=False)
    first, second = _rows(database_url)
    assert first["outcome"] == "failed: apply"
    assert secret not in first["detail"]
    assert first["migrations"] == [{"name": "1_a", "seconds": 0.1}]
    assert (second["outcome"], second["detail"]) == ("nothing pending", None)


def test_a_row_that_cannot_be_written_is_logged_never_raised(make_settings: MakeSettings) -> None:
    settings = make_settings("staging", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    life = Lifecycle.start(settings, "deploy", "run-9")
    life.error = MigrationError("apply failed")
    with structlog.testing.capture_logs() as logs:
        life.record(detail="apply failed")
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["audit_not_recorded"]
