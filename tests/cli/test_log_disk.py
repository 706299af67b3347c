"""A full or broken log disk never crashes a run.

A run whose log file could not be written died mid-apply with a traceback (exit 1), no
runbook, no audit row. Here the log folder is a real tiny tmpfs, filled up or mounted
read-only: the run goes on (its migrations, its runbook on stdout, its audit row), with one
warning about the log file. A failed run's log file, when writable, ends with its error.
"""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from predeploy._util import log
from support.cli import Cli
from support.hazards import project_env, query_value
from support.project import write_migrations


def _mount(folder: Path, *options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(["size=64k", *options]), "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")


@pytest.fixture
def small_disk(project: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs for the project's log folder, unmounted afterwards."""
    folder = project / "logs"
    _mount(folder)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path, leave: int = 0) -> None:
    """Write until the disk is full (ENOSPC), then free ``leave`` bytes."""
    with (folder / "filler").open("wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    if leave:
        size = (folder / "filler").stat().st_size
        os.truncate(folder / "filler", max(size - leave, 0))


def _scripts(count: int) -> dict[str, str | bytes]:
    return {f"{n:03d}_t{n}": f"CREATE TABLE t{n} (id int);" for n in range(count)}


def _warnings(stderr: str, event: str) -> list[str]:
    found = []
    for line in stderr.splitlines():
        if line.startswith("{") and json.loads(line).get("event") == event:
            found.append(json.loads(line)["detail"])
    return found


def _warning_events(stderr: str) -> list[str]:
    """The events of every warning (and error) logged on stderr, in order."""
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [e["event"] for e in events if e.get("level") in ("warning", "error")]


def _applied(database_url: str) -> object:
    return query_value(database_url, "SELECT count(*) FROM _prisma_migrations")


def test_a_log_disk_that_fills_up_mid_run_costs_the_log_not_the_run(
    cli: Cli, database_url: str, project: Path, small_disk: Path
) -> None:
    """4 KiB left: the log file takes the first events, then the disk is full during the
    apply. Every migration is applied, exit 0, one warning naming the file and ENOSPC, the
    runbook printed (and said not saved), the audit row written; no traceback."""
    write_migrations(project / "migrations", _scripts(40))
    _fill(small_disk, leave=4096)
    done = cli("migrate", "--env", "staging", "--yes", env=project_env(database_url, project))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert _applied(database_url) == 40
    warned = _warnings(done.stderr, "log_file_failed")
    assert len(warned) == 1, done.stderr
    assert "No space left on device" in warned[0] and "the run goes on" in warned[0]
    [log_file] = small_disk.glob("predeploy-staging-*.log")
    assert str(log_file) in warned[0]
    assert log_file.stat().st_size > 0  # it took what fitted
    assert "runbook (not saved:" in done.stdout and "predeploy restore" in done.stdout, done.stdout
    assert not list(small_disk.glob("runbook-*"))  # none cut short
    assert _warning_events(done.stderr) == ["log_file_failed"]  # one disk, one warning
    assert query_value(database_url, "SELECT outcome FROM predeploy_runs") == "applied"


def test_a_full_log_disk_and_a_failing_migration(
    cli: Cli, database_url: str, project: Path, small_disk: Path
) -> None:
    """A full disk from the start, then a migration fails: exit 5 with its one error line,
    the runbook on stdout, the audit row 'failed: apply', one log-file warning."""
    write_migrations(project / "migrations", {**_scripts(5), "900_bad": "SELECT nope;"})
    _fill(small_disk)
    done = cli("migrate", "--env", "staging", "--yes", env=project_env(database_url, project))
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.strip().splitlines()[-1].startswith("predeploy: migration 900_bad failed")
    assert len(_warnings(done.stderr, "log_file_failed")) == 1, done.stderr
    assert _warning_events(done.stderr) == ["log_file_failed"]  # not runbook_not_written too
    assert not list(small_disk.glob("predeploy-*.log"))  # not a byte of it fitted: removed
    assert "(removed: empty)" in _warnings(done.stderr, "log_file_failed")[0]
    assert _applied(database_url) == 5
    assert "runbook (not saved:" in done.stdout, done.stdout
    assert query_value(database_url, "SELECT outcome FROM predeploy_runs") == "failed: apply"


def test_a_read_only_log_disk(cli: Cli, database_url: str, project: Path) -> None:
    """A log folder on a read-only file system: one warning, the run as usual."""
    folder = project / "logs"
    _mount(folder, "ro")
    try:
        write_migrations(project / "migrations", _scripts(5))
        done = cli("migrate", "--env", "staging", "--yes", env=project_env(database_url, project))
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    warned = _warnings(done.stderr, "log_file_unavailable")
    assert len(warned) == 1 and "Read-only file system" in warned[0], done.stderr
    assert _warning_events(done.stderr) == ["log_file_unavailable"]
    assert "runbook (not saved:" in done.stdout and "Read-only file system" in done.stdout
    assert _applied(database_url) == 5
    assert query_value(database_url, "SELECT outcome FROM predeploy_runs") == "applied"


def _log_events(folder: Path) -> list[dict[str, object]]:
    [log_file] = folder.glob("predeploy-*.log")
    return [json.loads(line) for line in log_file.read_text().splitlines()]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("migrate", "--env", "staging", "--yes"), 5),  # a migration's SQL fails
        (("migrate", "--env", "prod"), 8),  # a gate between steps: no terminal to ask on
        (("deploy", "--env", "staging", "--yes"), 2),  # deploy's own: pm2 not found
    ],
)
def test_a_failed_run_s_log_file_ends_with_its_error_line(
    cli: Cli, database_url: str, project: Path, args: tuple[str, ...], code: int
) -> None:
    write_migrations(project / "migrations", {"1_a": "SELECT 1;", "2_bad": "SELECT nope;"})
    env = project_env(
        database_url, project, PREDEPLOY_PM2_APP="app", PREDEPLOY_PM2_BIN=str(project / "none")
    )
    done = cli(*args, env=env)
    assert done.returncode == code, done.stderr
    line = done.stderr.strip().splitlines()[-1].removeprefix("predeploy: ")
    failures = [e for e in _log_events(project / "logs") if e.get("event") == "run_failed"]
    assert [e["detail"] for e in failures] == [line], failures
    assert failures[0]["exit_code"] == code


def test_the_writer_warns_once_then_skips_the_file(small_disk: Path) -> None:
    """In process: every event still reaches stderr, the file's failure is said once, and
    the boundary knows the file is gone (an internal error does not point at it)."""
    _fill(small_disk)
    stream = io.StringIO()
    setup = log.configure(env="dev", log_dir=small_disk, json_output=True, stream=stream)
    assert setup.log_file is not None and log.file_in_use()
    for n in range(3):
        structlog.get_logger("t").info("event", n=n)
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["event", "log_file_failed", "event", "event"], events
    assert not log.file_in_use()


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_stdout_or_stderr_on_a_full_disk_does_not_stop_the_run(
    database_url: str, project: Path, small_disk: Path, tmp_path: Path, stream: str
) -> None:
    """`predeploy migrate > full/out.log` (or 2>): the run applies and records everything,
    exit 0, no traceback; the log file (elsewhere) says which stream was lost."""
    write_migrations(project / "migrations", _scripts(5))
    _fill(small_disk)
    env = {**os.environ, **project_env(database_url, project, PREDEPLOY_LOG_DIR=str(tmp_path))}
    env.pop("PREDEPLOY_ENV", None)
    with (small_disk / "out.txt").open("w") as lost:
        done = subprocess.run(
            [sys.executable, "-m", "predeploy", "migrate", "--env", "staging", "--yes"],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=lost if stream == "stdout" else subprocess.PIPE,
            stderr=lost if stream == "stderr" else subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in (done.stderr or "") + (done.stdout or "")
    assert _applied(database_url) == 5
    assert query_value(database_url, "SELECT outcome FROM predeploy_runs") == "applied"
    [log_file] = tmp_path.glob("predeploy-staging-*.log")
    noted = [e for e in _log_events(tmp_path) if e.get("event") == f"{stream}_unwritable"]
    assert len(noted) == 1, log_file.read_text()
    if stream == "stdout":  # said on stderr too, once
        assert len(_warnings(done.stderr, "stdout_unwritable")) == 1, done.stderr


@pytest.mark.parametrize("json_output", [False, True])
def test_a_full_disk_under_the_log_folder_and_stdout_sends_the_runbook_to_stderr(
    database_url: str, project: Path, small_disk: Path, json_output: bool
) -> None:
    """`PREDEPLOY_LOG_DIR=full predeploy migrate > full/out.log`: neither the runbook's file
    nor stdout can take the runbook, so stderr does (as text, or a JSON line with --json):
    the way back reaches the operator."""
    write_migrations(project / "migrations", _scripts(2))
    for name in ("000_t0", "001_t1"):
        (project / "migrations" / name / "down.sql").write_text(f"DROP TABLE t{name[-1]};\n")
    _fill(small_disk)
    env = {**os.environ, **project_env(database_url, project, PREDEPLOY_LOG_DIR=str(small_disk))}
    env.pop("PREDEPLOY_ENV", None)
    flags = ["--json"] if json_output else []
    with (small_disk / "out.log").open("w") as lost:
        done = subprocess.run(
            [sys.executable, "-m", "predeploy", "migrate", "--env", "staging", "--yes", *flags],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=lost,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert _applied(database_url) == 2
    assert len(_warnings(done.stderr, "stdout_unwritable")) == 1, done.stderr
    undo = "predeploy rollback --env staging --migrations 001_t1,000_t0 --yes"
    if json_output:
        events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
        [event] = [e for e in events if e["event"] == "runbook_on_stderr"]
        assert undo in event["commands"], event
    else:
        lines = done.stderr.splitlines()
        assert any(line.startswith("runbook (not saved: ") for line in lines), done.stderr
        assert undo in lines and any(line.startswith("predeploy restore") for line in lines)
