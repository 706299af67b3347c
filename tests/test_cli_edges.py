"""The `predeploy` program at its edges, as a new user meets them (the new-user sweep).

Each case runs the real program as a subprocess: a stdout whose reader is gone, SIGHUP,
flags that are not ours, two tasks in one call, stray library log lines, the help text,
bad env names, runbook lines pasted into a shell.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

from conftest import _OUR_VARIABLES, write_migrations
from hazards import predeploy_sessions, project_env, query_value, wait_until
from predeploy.config.settings import load_settings
from predeploy.migrate import commands

NO_NOISE = ("Traceback", "BrokenPipe", "Broken pipe", "Exception ignored")


def into_closed_pipe(
    project: Path, *args: str, env: dict[str, str] | None = None, stderr_too: bool = False
) -> subprocess.CompletedProcess[str]:
    """`predeploy ARGS | head -0`, deterministically: stdout (and with ``stderr_too``
    stderr: `2>&1 | head`) is a real pipe whose reader closed before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    environ = {k: v for k, v in os.environ.items() if k not in _OUR_VARIABLES}
    try:
        return subprocess.run(
            [sys.executable, "-m", "predeploy", *args],
            cwd=project,
            env={**environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=write_end if stderr_too else subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)


def quiet(done: subprocess.CompletedProcess[str]) -> None:
    """No traceback and no broken-pipe noise on stderr."""
    assert not any(word in (done.stderr or "") for word in NO_NOISE), done.stderr


def run_ids(project: Path) -> list[str]:
    """The run ids of the project's log files, oldest first."""
    logs = sorted((project / "logs").glob("predeploy-*.log"), key=os.path.getmtime)
    return [path.stem.rsplit("-", 1)[1] for path in logs]


def test_help_and_list_into_a_closed_pipe_end_quietly(project: Path) -> None:
    """`predeploy --help | head`, `--list | head`, `TASK --help | head`: exit 0, nothing on
    stderr (it was a BrokenPipeError traceback, exit 1)."""
    for args in (("--help",), ("--list",), ("migrate", "--help"), ("--version",)):
        done = into_closed_pipe(project, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert done.stderr == "", (args, done.stderr)


def test_migrate_into_a_closed_pipe_runs_and_reports_as_usual(
    project: Path, database_url: str
) -> None:
    """`migrate --yes | head`: applied, with its runbook file and audit row, exit 0; a dry run
    exit 0; a failing run with stderr in the pipe too keeps its own exit code (5), runbook
    and audit row (it was exit 9, no runbook, no audit row)."""
    migrations = project / "migrations"
    write_migrations(migrations, {"1_a": "CREATE TABLE a (id int);"})
    (migrations / "1_a" / "down.sql").write_text("DROP TABLE a;\n")
    env = project_env(database_url, project)
    dry = into_closed_pipe(project, "migrate", "--env", "staging", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    quiet(dry)
    done = into_closed_pipe(project, "migrate", "--env", "staging", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    quiet(done)
    assert query_value(database_url, "SELECT to_regclass('a')::text") == "a"
    applied = run_ids(project)[-1]
    assert (project / "logs" / f"runbook-staging-{applied}.txt").is_file()
    outcome = "SELECT outcome FROM predeploy_runs WHERE run_id = %s"
    assert query_value(database_url, outcome, applied) == "applied"
    write_migrations(migrations, {"2_bad": "UPDATE nosuch SET a = 1;"})
    failed = into_closed_pipe(project, "migrate", "--env", "staging", "--yes", env=env,
                              stderr_too=True)  # fmt: skip
    assert failed.returncode == 5
    failing = run_ids(project)[-1]
    assert failing != applied
    assert (project / "logs" / f"runbook-staging-{failing}.txt").is_file()
    assert str(query_value(database_url, outcome, failing)).startswith("failed")


def _controlling_terminal() -> None:
    """In the child: a session of its own whose controlling terminal is its stdin's pty."""
    import fcntl  # noqa: PLC0415
    import termios  # noqa: PLC0415

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_a_hung_up_terminal_is_sigterm_with_129(project: Path, database_url: str) -> None:
    """The terminal closes (ssh dropped) while a migration runs: the kernel's SIGHUP cancels
    the query and rolls it back, the runbook and the audit row are written, exit 129 (it
    was 129 at once, the server going on to commit, no runbook, no audit row)."""
    migrations = project / "migrations"
    write_migrations(migrations, {"1_base": "CREATE TABLE base (id int);"})
    env = project_env(database_url, project)
    commands.migrate(load_settings("staging", project, env))
    write_migrations(migrations, {"2_slow": "CREATE TABLE slow (id int);\nSELECT pg_sleep(60);"})
    master, slave = os.openpty()
    environ = {k: v for k, v in os.environ.items() if k not in _OUR_VARIABLES}
    proc = subprocess.Popen(
        [sys.executable, "-m", "predeploy", "migrate", "--env", "staging", "--yes", "--no-backup"],
        cwd=project,
        env={**environ, **env},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=_controlling_terminal,  # noqa: PLW1509 (setsid and an ioctl only)
    )
    os.close(slave)
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
        " AND query LIKE 'SELECT pg_sleep(60)%%' AND datname = current_database()"
    )
    try:
        deadline = time.monotonic() + 30
        while not query_value(database_url, sleeping):  # the screen is read, never left full
            assert proc.poll() is None and time.monotonic() < deadline, "no pg_sleep seen"
            if select.select([master], [], [], 0.02)[0]:
                os.read(master, 65536)
        os.close(master)  # the hang-up: SIGHUP to the session's leader, EIO on its terminal
        code = proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 129
    wait_until(lambda: not predeploy_sessions(database_url), timeout=5, what="sessions to end")
    assert query_value(database_url, "SELECT to_regclass('slow')") is None
    run_id = run_ids(project)[-1]
    assert "changed nothing" in (project / "logs" / f"runbook-staging-{run_id}.txt").read_text()
    detail = "SELECT detail FROM predeploy_runs WHERE run_id = %s"
    assert "SIGHUP" in str(query_value(database_url, detail, run_id))
