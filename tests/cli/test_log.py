"""Logging: JSON off a terminal, secrets scrubbed, file-only events."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import structlog

from predeploy._util import log
from support.cli import Cli
from support.hazards import project_env
from support.project import write_migrations


def test_json_lines_with_env_and_run_id_and_no_secret(tmp_path: Path) -> None:
    """Off a terminal, events are JSON lines carrying env and run id, secrets scrubbed."""
    stream = io.StringIO()
    setup = log.configure(
        env="prod",
        log_dir=tmp_path,
        json_output=False,
        secrets=["hunter2"],
        stream=stream,
        run_id="abc123",
    )
    structlog.get_logger("t").info("connected", url="postgresql://u:hunter2@h/db")
    logging.shutdown()
    event = json.loads(stream.getvalue().splitlines()[-1])
    assert event["event"] == "connected"
    assert event["env"] == "prod" and event["run_id"] == "abc123"
    assert "hunter2" not in stream.getvalue()
    assert setup.log_file is not None
    assert "hunter2" not in setup.log_file.read_text()
    assert setup.log_file.name.startswith("predeploy-prod-")


def test_file_only_events_stay_off_stderr(tmp_path: Path) -> None:
    """An event marked file-only reaches the log file and not stderr."""
    stream = io.StringIO()
    setup = log.configure(env="dev", log_dir=tmp_path, json_output=True, stream=stream)
    structlog.get_logger("t").error("run_failed", **{log.FILE_ONLY: True})
    assert stream.getvalue() == ""
    assert setup.log_file is not None and "run_failed" in setup.log_file.read_text()


def test_unwritable_log_dir_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    """A log folder that cannot be made costs the file, not the run."""
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the folder should be")
    stream = io.StringIO()
    setup = log.configure(env="dev", log_dir=blocker, json_output=True, stream=stream)
    assert setup.log_file is None
    assert "log_file_unavailable" in stream.getvalue()


def test_scrubber_masks_every_form_and_spares_identifiers() -> None:
    """Secrets go in every form, nested; a short password spares identifiers containing it."""
    from predeploy._util.redact import Scrubber  # noqa: PLC0415

    scrub = Scrubber(["Secr3t/Part@x", "pwpw", "postgres", "pw"])
    nested = {"a": ["Secr3t%2FPart%40x", {"b": "url postgresql://u:other@h/db"}], "n": 3}
    assert scrub.value(nested) == {"a": ["***", {"b": "url postgresql://u:***@h/db"}], "n": 3}
    assert scrub.text("migration 20230529_user_add_pwpw, password pwpw") == (
        "migration 20230529_user_add_pwpw, password ***"
    )
    assert scrub.text("user postgres at postgresql://h/db") == "user *** at postgresql://h/db"
    # under 4 characters: no telling it from ordinary words, only its place masks it
    assert scrub.text("pw 2 pw") == "pw 2 pw"
    assert scrub.text("CREATE ROLE x PASSWORD 'pw'") == "CREATE ROLE x PASSWORD '***'"


def test_a_run_that_logs_nothing_leaves_no_log_file(
    cli: Cli, database_url: str, project: Path
) -> None:
    """init, status and the like logged nothing and left a zero-byte predeploy-*.log each
    (7 after a first session): now a run's file goes when it is still empty at exit; a run
    that logs something keeps its file, and a run that logged nothing on its last run does
    not take an older file with it; a failed run keeps its file (its error line)."""
    env = project_env(database_url, project)
    write_migrations(project / "migrations", {"1_a": "CREATE TABLE a (id bigint);"})
    done = cli("migrate", "--env", "staging", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    [kept] = (project / "logs").glob("predeploy-*.log")
    assert kept.stat().st_size > 0
    for args in (("init",), ("status", "--env", "staging"), ("backups", "--env", "staging")):
        done = cli(*args, env=env)
        assert done.returncode == 0, done.stderr
        assert list((project / "logs").glob("predeploy-*.log")) == [kept], args
    write_migrations(project / "migrations", {"2_b": "CREATE TABLE b (id bigint);"})
    pending = cli("status", "--env", "staging", "--check", env=env)
    assert pending.returncode == 1, pending.stderr  # its failure line is in its log file
    [failed] = set((project / "logs").glob("predeploy-*.log")) - {kept}
    assert '"event": "run_failed"' in failed.read_text()
