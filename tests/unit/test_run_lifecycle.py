"""The run lifecycle's decisions, as tables: the outcome string of each way a run ends,
the step it names, and how each signal becomes the run's error (commands/run.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from predeploy.commands.run import Lifecycle, outcome, where
from predeploy.commands.steps import Step
from predeploy.config.settings import load_settings
from predeploy.errors import (
    BackupError,
    CheckFailed,
    Interrupted,
    MigrationError,
    PredeployError,
    Refused,
    StoppedPartWay,
    Terminated,
)


def _stopped_before(name: str) -> MigrationError:
    error = MigrationError(f"{name} waits for the post-deploy phase")
    error.stopped_before = name
    return error


def _refused_by(gate: str) -> BackupError:
    error = BackupError("not this one")
    error.refused_by = gate
    return error


OUTCOMES: list[tuple[str, PredeployError | None, str | None, bool, str]] = [
    ("migrate", None, None, True, "applied"),
    ("migrate", None, None, False, "nothing pending"),
    ("deploy", None, None, True, "deployed"),
    ("rollback", None, None, True, "rolled back"),
    ("restore", None, None, True, "restored"),
    ("migrate", Interrupted("interrupted (SIGINT) while x", 130), "apply", True, "interrupted"),
    ("migrate", Interrupted("stopped by SIGTERM while x", 143), "apply", True, "interrupted"),
    ("rollback", Interrupted("stopped by SIGHUP while x", 129), None, True, "interrupted"),
    ("deploy", Interrupted("stopped by SIGTERM while x", 143), "reload", True, "interrupted"),
    ("restore", Interrupted("interrupted (SIGINT) while x", 130), None, True, "interrupted"),
    (
        "migrate",
        Refused("no terminal", "confirmation (no terminal)"),
        "after backup",
        True,
        "refused: confirmation (no terminal)",
    ),
    ("rollback", Refused("declined"), None, True, "refused: confirmation"),
    ("restore", _refused_by("damaged backup"), None, True, "refused: damaged backup"),
    ("migrate", _stopped_before("2_post"), None, True, "applied: stopped before 2_post"),
    ("migrate", MigrationError("syntax error"), "apply", True, "failed: apply"),
    ("migrate", CheckFailed("drift"), "drift", True, "failed: drift"),
    ("rollback", MigrationError("down.sql failed"), None, True, "failed"),
    ("restore", BackupError("pg_restore failed"), None, True, "failed"),
    # a deploy's row names its failed step only (its migrate's row says why)
    (
        "deploy",
        Refused("no terminal", "confirmation (no terminal)"),
        "migrate",
        True,
        "failed: migrate",
    ),
    ("deploy", _stopped_before("2_post"), "migrate", True, "failed: migrate"),
    ("deploy", CheckFailed("unhealthy"), "healthy", True, "failed: healthy"),
]


@pytest.mark.parametrize(("command", "error", "at", "changed", "expected"), OUTCOMES)
def test_each_end_of_a_run_has_one_outcome_string(
    command: str, error: PredeployError | None, at: str | None, changed: bool, expected: str
) -> None:
    assert outcome(command, error, where=at, changed=changed) == expected


def _steps(*done: tuple[str, str]) -> list[Step]:
    return [Step(name, result, 0.1) for name, result in done]


WHERE: list[tuple[str, list[Step], str | None]] = [
    ("migrate", _steps(("connectivity", "ok"), ("lint", "failed")), "lint"),
    ("migrate", _steps(("history", "ok"), ("apply", "interrupted")), "apply"),
    ("migrate", _steps(("history", "ok"), ("backup", "ok")), "after backup"),
    ("migrate", _steps(("backup", "skipped")), "after backup"),
    ("migrate", [], "before the first step"),
    ("deploy", _steps(("pm2", "ok")), "migrate"),
    ("deploy", _steps(("pm2", "ok"), ("reload", "ok"), ("healthy", "failed")), "healthy"),
    ("rollback", [], None),
    ("restore", [], None),
]


@pytest.mark.parametrize(("command", "steps", "expected"), WHERE)
def test_a_stopped_run_names_the_step_it_stopped_in(
    command: str, steps: list[Step], expected: str | None
) -> None:
    assert where(command, steps) == expected


SIGNALS: list[tuple[KeyboardInterrupt, int, str]] = [
    (KeyboardInterrupt(), 130, "interrupted (SIGINT) while migrating (apply)"),
    (Terminated(signal.SIGTERM), 143, "stopped by SIGTERM while migrating (apply)"),
    (Terminated(signal.SIGHUP), 129, "stopped by SIGHUP while migrating (apply)"),
]


@pytest.mark.parametrize(("signal_", "code", "message"), SIGNALS)
def test_each_signal_becomes_the_interrupted_error_of_its_exit_code(
    signal_: KeyboardInterrupt, code: int, message: str
) -> None:
    error = Lifecycle.stopped(signal_, "migrating (apply)")
    assert isinstance(error, Interrupted)
    assert (error.exit_code, error.message) == (code, message)
    assert outcome("migrate", error, where="apply") == "interrupted"


def test_a_signal_mid_migration_names_the_migration_it_left_failed() -> None:
    stopped = StoppedPartWay(signal.SIGTERM, "3_index", ("CREATE INDEX CONCURRENTLY a",), 2)
    error = Lifecycle.stopped(stopped, "migrating (apply)")
    assert isinstance(error, Interrupted)
    assert (error.exit_code, error.left_failed, error.ran) == (143, "3_index", stopped.ran)
    assert "predeploy resolve --rolled-back 3_index" in error.message


def test_a_predeploy_error_is_the_runs_error_as_it_is() -> None:
    failed = MigrationError("syntax error")
    assert Lifecycle.stopped(failed, "migrating") is failed


@pytest.fixture
def life(tmp_path: Path) -> Lifecycle:
    settings = load_settings("dev", tmp_path, {"DATABASE_URL": "postgresql://u:pw@db.example/a"})
    return Lifecycle.start(settings, "migrate", "run-1")


@pytest.mark.parametrize(
    ("raised", "code", "recorded"),
    [
        (MigrationError("syntax error"), 5, "failed: apply"),
        (KeyboardInterrupt(), 130, "interrupted"),
        (Terminated(signal.SIGTERM), 143, "interrupted"),
        (Refused("declined"), 8, "refused: confirmation"),
    ],
)
def test_ending_keeps_the_step_and_the_mapped_error_for_the_end_of_the_run(
    life: Lifecycle, raised: BaseException, code: int, recorded: str
) -> None:
    with life.ending(lambda: f"migrating ({where('migrate', life.steps)})"), life.step("apply"):
        raise raised
    assert life.error is not None
    assert life.exit_code == code
    assert life.steps[-1].name == "apply"
    assert life.steps[-1].outcome == ("interrupted" if code > 128 else "failed")
    assert life.outcome() == recorded
    if code > 128:
        assert life.error.message.endswith("while migrating (apply)")


def test_ending_lets_a_bug_through_and_a_clean_run_has_no_error(life: Lifecycle) -> None:
    with life.ending(lambda: "migrating"):
        pass
    assert (life.error, life.exit_code, life.outcome(changed=False)) == (None, 0, "nothing pending")
    with pytest.raises(ZeroDivisionError), life.ending(lambda: "migrating"):
        _ = 1 / 0
    assert life.error is None


def test_the_runs_row_starts_with_the_settings_scrubber(life: Lifecycle) -> None:
    assert (life.command, life.run_id, life.trail.env) == ("migrate", "run-1", "dev")
    assert life.trail.scrubber is life.settings.scrubber
    assert "pw" not in str(life.trail.scrubber.value("postgresql://u:pw@db.example/a"))
