"""What a run's runbook says, as a table of (what it applied, how it ended, the backup it
took): build_runbook in commands/runbook.py, no database; it is written under the log
folder, secrets masked."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from predeploy.commands.runbook import TakenBackup, build_runbook
from predeploy.config.settings import Settings, load_settings
from predeploy.errors import Interrupted, PredeployError, Refused
from predeploy.migrate.outcome import Applied, MigrationFailed
from predeploy.migrate.plan import OutOfPhase

NOTHING = "# this run changed nothing in the database: there is nothing to undo"
BACKUP = TakenBackup(Path("/backups/app 1.dump"), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))


def _settings(tmp_path: Path, **values: str) -> Settings:
    url = "postgresql://app:s3cret@db.example/app"
    base = {"DATABASE_URL": url, "PREDEPLOY_LOG_DIR": str(tmp_path / "logs")}
    return load_settings("staging", tmp_path, base | values)


def _part_way(name: str, *ran: str, invalid: tuple[str, ...] = ()) -> MigrationFailed:
    error = MigrationFailed(name, "deadlock detected", left_failed=True)
    error.ran, error.invalid = ran, invalid
    return error


# (applied, has a down.sql, error, backup, pm2 app) -> lines in this order; absent fragments
CASES = [
    pytest.param([], True, None, None, False, [NOTHING], ["run it again", "restore"], id="clean"),
    pytest.param(
        [],
        True,
        Refused("declined"),
        BACKUP,
        False,
        [NOTHING, "run it again:", "migrate --env staging", "backup it took is kept: '/backups"],
        ["restore", "rollback"],
        id="refused-after-backup",
    ),
    pytest.param(
        ["1_a", "2_b"],
        True,
        None,
        None,
        False,
        [
            "# this run applied 2 migration(s): 2_b, 1_a",
            "rollback --env staging --migrations 2_b,1_a --yes",
            "# no backup was taken by this run",
        ],
        ["before it failed"],
        id="applied",
    ),
    pytest.param(
        ["1_a"],
        True,
        MigrationFailed("2_b", "syntax error"),
        BACKUP,
        False,
        [
            "# before it failed, this run applied 1 migration(s): 1_a",
            "--migrations 1_a --yes",
            "as a last resort",
            "every write made since 2026-01-02 03:04:05 UTC",
            "restore --env staging --backup '/backups/app 1.dump' --yes",
        ],
        ["pm2"],
        id="applied-then-failed",
    ),
    pytest.param(
        ["1_a"],
        True,
        OutOfPhase("2_b waits for the post-deploy phase"),
        None,
        False,
        ["# this run applied 1 migration(s): 1_a"],
        ["before it failed"],
        id="stopped-between-phases",
    ),
    pytest.param(
        ["1_a", "2_b"],
        False,
        None,
        BACKUP,
        False,
        ["# no down.sql for 2_b, 1_a: undo by restoring the backup", "restore --env staging"],
        ["rollback"],
        id="no-down-sql",
    ),
    pytest.param(
        [],
        True,
        _part_way("1_idx", "CREATE INDEX CONCURRENTLY a ON t (x)", invalid=("public.a",)),
        None,
        False,
        [
            "# 1_idx stopped part-way outside a transaction and is recorded as failed;",
            "# it had run 1 statement(s), which stay done:",
            "#   CREATE INDEX CONCURRENTLY a ON t (x)",
            "left 1 INVALID index(es)",
            "#   DROP INDEX CONCURRENTLY public.a;",
            "(its down.sql undoes the whole migration",
            "resolve --env staging --rolled-back 1_idx",
            "# no backup was taken by this run",
        ],
        [NOTHING],
        id="part-way",
    ),
    pytest.param(
        ["1_a"],
        False,
        Interrupted("stopped by SIGTERM while applying 2_b", 143, left_failed="2_b"),
        BACKUP,
        True,
        [
            "# 2_b stopped part-way",
            "# none of its statements had completed",
            "resolve --env staging --rolled-back 2_b",
            "# before it failed, this run applied 1 migration(s): 1_a",
            "# no down.sql for 1_a",
            "stop web",
            "restore --env staging",
            "start web",
        ],
        ["its down.sql undoes"],
        id="interrupted-part-way-with-pm2",
    ),
]


@pytest.mark.parametrize(("applied", "down", "error", "backup", "pm2", "lines", "lacks"), CASES)
def test_the_runbook_of_each_way_a_run_ends(
    tmp_path: Path,
    applied: list[str],
    down: bool,
    error: PredeployError | None,
    backup: TakenBackup | None,
    pm2: bool,
    lines: list[str],
    lacks: list[str],
) -> None:
    extra = {"PREDEPLOY_PM2_APP": "web", "PREDEPLOY_PM2_BIN": "/bin/true"} if pm2 else {}
    runbook = build_runbook(
        _settings(tmp_path, **extra),
        backup=backup,
        applied=[Applied(name, 0.1, True, 1) for name in applied],
        error=error,
        run_id="r1",
        has_down=dict.fromkeys([*applied, "1_idx", "2_b"], down),
    )
    text = runbook.text()
    at = [next((i for i, c in enumerate(runbook.commands) if part in c), -1) for part in lines]
    assert -1 not in at and at == sorted(at), (lines, text)
    assert not any(part in text for part in lacks), text
    assert runbook.path == tmp_path / "logs" / "runbook-staging-r1.txt"
    assert runbook.path.read_text() == text + "\n"


def test_again_names_the_command_as_it_was_asked(tmp_path: Path) -> None:
    words = ["deploy", "--env", "staging", "--post-deploy"]
    runbook = build_runbook(
        _settings(tmp_path),
        backup=None,
        applied=[],
        error=Refused("declined"),
        run_id="r2",
        has_down={},
        again=words,
    )
    assert runbook.commands[-1].endswith("deploy --env staging --post-deploy")


def test_a_secret_among_the_statements_that_ran_is_masked(tmp_path: Path) -> None:
    error = _part_way("1_role", "ALTER ROLE app PASSWORD 's3cret'")
    runbook = build_runbook(
        _settings(tmp_path),
        backup=None,
        applied=[],
        error=error,
        run_id="r3",
        has_down={},
    )
    assert runbook.path is not None
    for text in (runbook.text(), runbook.path.read_text()):
        assert "s3cret" not in text and "ALTER ROLE app PASSWORD" in text


def test_an_unwritable_log_folder_still_gives_the_runbook(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("a file where the folder should be\n")
    runbook = build_runbook(
        _settings(tmp_path), backup=None, applied=[], error=None, run_id="r4", has_down={}
    )
    assert runbook.commands == [NOTHING]
    assert runbook.path is None and runbook.unsaved is not None


def test_a_long_run_lists_its_migrations_briefly_and_rolls_back_each(
    tmp_path: Path,
) -> None:
    """434 applied migrations: the comment names the newest and oldest few and the count;
    the rollback command still names every one of them."""
    names = [f"{i:04d}_step" for i in range(434)]
    runbook = build_runbook(
        _settings(tmp_path),
        backup=None,
        applied=[Applied(name, 0.01, True, 1) for name in names],
        error=None,
        run_id="r1",
        has_down=dict.fromkeys(names, True),
    )
    intro = runbook.commands[0]
    assert intro == (
        "# this run applied 434 migration(s): 0433_step, 0432_step, 0431_step, ..., "
        "0001_step, 0000_step (434 in all)"
    )
    rollback = next(line for line in runbook.commands if "rollback" in line)
    assert rollback.count("_step") == 434
