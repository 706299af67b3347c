"""The `predeploy` program at its edges, as a new user meets them (the new-user sweep).

Each case runs the real program as a subprocess: a stdout whose reader is gone, SIGHUP,
flags that are not ours, two tasks in one call, stray library log lines, the help text,
bad env names, runbook lines pasted into a shell.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from predeploy.cli.program import EXIT_CODES
from predeploy.cli.render import render_runs
from predeploy.config.settings import load_settings
from support import migrating
from support.cli import Cli, run_invoke
from support.environ import OUR_VARIABLES
from support.hazards import (
    at_once,
    one_line,
    predeploy_sessions,
    project_env,
    query_value,
    wait_until,
)
from support.project import write_migrations
from support.terminal import run_in_terminal

NO_NOISE = ("Traceback", "BrokenPipe", "Broken pipe", "Exception ignored")


def into_closed_pipe(
    project: Path, *args: str, env: dict[str, str] | None = None, stderr_too: bool = False
) -> subprocess.CompletedProcess[str]:
    """`predeploy ARGS | head -0`, deterministically: stdout (and with ``stderr_too``
    stderr: `2>&1 | head`) is a real pipe whose reader closed before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    environ = {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES}
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
            start_new_session=True,
        )
    finally:
        os.close(write_end)


def cli_in(project: Path) -> Cli:
    """The conftest ``cli`` runner for ``project``."""
    return lambda *args, env=None, cwd=None, preexec=None: run_invoke(
        cwd or project, *args, env=env, preexec=preexec
    )


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
    migrating.migrate(load_settings("staging", project, env))
    write_migrations(migrations, {"2_slow": "CREATE TABLE slow (id int);\nSELECT pg_sleep(60);"})
    master, slave = os.openpty()
    environ = {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES}
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


INVOKES_OWN = (
    ("--dry",), ("-R",), ("--echo",), ("-e",), ("--pty",), ("-p",), ("--warn-only",), ("-w",),
    ("--hide", "both"), ("--command-timeout", "5"), ("-T", "5"), ("--config", "x.yaml"),
    ("-f", "x.yaml"), ("--prompt-for-sudo-password",), ("--write-pyc",), ("--debug",), ("-d",),
    ("--list-format", "json"), ("--list-depth", "1"), ("--collection", "x"), ("--no-dedupe",),
    ("--search-root", "/"),
)  # fmt: skip


def test_invokes_own_flags_are_refused_and_not_in_the_help(
    cli: Cli, project: Path, database_url: str
) -> None:
    """`predeploy --dry migrate --yes` applied for real: every invoke flag that is not ours
    is now exit 2 with one line, before or after the task, and nothing is applied; --help
    lists only predeploy's global flags."""
    write_migrations(project / "migrations", {"1_a": "CREATE TABLE a (id int);"})
    env = project_env(database_url, project)
    task = ("migrate", "--env", "staging", "--yes", "--no-backup")
    runs = [(*flag, *task) for flag in INVOKES_OWN] + [(*task, "--dry"), (*task, "--echo")]
    for done, _ in at_once(cli, runs, env=env):
        assert done.returncode == 2, (done.args, done.stderr)
        assert one_line(done).startswith("predeploy: unknown flag or task -"), done.stderr
    assert query_value(database_url, "SELECT to_regclass('a')") is None
    assert not (project / "logs").exists()  # no run began
    shown = cli("--help").stdout
    flags = shown.split("Global options:")[1].split("Subcommands:")[0]
    for names in (("-h", "--help"), ("-l", "--list"), ("-V", "--version"), ("-v", "--verbose"),
                  ("-q", "--quiet"), ("--no-color",), ("--print-completion-script",)):  # fmt: skip
        assert all(name in flags for name in names), (names, flags)
    for flag, *_ in INVOKES_OWN:
        assert f"{flag} " not in flags and f"{flag}=" not in flags and f"{flag}," not in flags
    assert "--complete " not in flags  # the completion script's plumbing, not for people


def test_one_task_at_a_time(cli: Cli, project: Path) -> None:
    """`predeploy check status --env staging` ran check on dev, then status: now exit 2,
    one line, nothing run; in this repository `invoke TASK` still works as before."""
    for args in (("check", "status", "--env", "staging"), ("db.url", "check"), ("check", "check")):
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "one task at a time" in one_line(done)
    assert not (project / "logs").exists() and not (project / ".pgdata").exists()
    listed = subprocess.run(
        [sys.executable, "-m", "invoke", "--list"],
        cwd=project, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "migrate" in listed.stdout and "db.url" in listed.stdout


def readme_exit_codes() -> list[tuple[str, str]]:
    """README's "Exit codes" table: (code, meaning), backticks dropped."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = text.split("## Exit codes", 1)[1].split("\n\n", 2)[1]
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    return [(code.strip(), meaning.strip().replace("`", "")) for code, meaning in rows]


def test_help_lists_the_exit_codes_of_the_readme(cli: Cli) -> None:
    """`predeploy --help` ends with README's exit-code table (DESIGN: documented in both);
    -q says what it does: errors only, as the README says."""
    assert list(EXIT_CODES) == readme_exit_codes()
    shown = cli("--help")
    assert shown.returncode == 0, shown.stderr
    codes = " ".join(shown.stdout.split("Exit codes:")[1].split())  # as wrapped to 80 columns
    for code, meaning in EXIT_CODES:
        assert f"{code} {meaning}" in codes, (code, codes)
    quiet_line = next(line for line in shown.stdout.splitlines() if "--quiet" in line)
    assert quiet_line.split("--quiet", 1)[1].strip() == "errors only"
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "`-q` for errors only" in readme
    task_help = cli("migrate", "--help").stdout
    assert task_help.startswith("Usage: predeploy migrate [--options]\n"), task_help
    assert "other tasks" not in task_help and "predeploy --help" in task_help


def library_lines(logs: Path, seen: set[Path]) -> list[dict[str, object]]:
    """psycopg's records in the log files of ``logs`` not in ``seen`` (then added to it)."""
    new = set(logs.glob("predeploy-*.log")) - seen
    seen |= new
    events = [json.loads(line) for path in new for line in path.read_text().splitlines()]
    return [e for e in events if e["event"] == "library_log" and e["logger"] == "psycopg"]


def test_library_log_lines_stay_off_the_terminal(project: Path, database_url: str) -> None:
    """A failing SQL migration sent in a pipeline: psycopg may log "error ignored
    terminating <Pipeline ...>" (it came before the one error line); with -q that record is
    in the run's log file only, with -v on stderr too. (Whether psycopg logs it depends on
    when the server's error arrives: each case runs until it did, at most 8 times.)"""
    migrations = project / "migrations"
    write_migrations(migrations, {"1_a": "CREATE TABLE a (id int);"})
    env = project_env(database_url, project)
    migrating.migrate(load_settings("staging", project, env))
    write_migrations(migrations, {"2_bad": "UPDATE nosuch SET a = 1;"})
    args = ("migrate", "--env", "staging", "--yes", "--no-backup")
    cli, seen = cli_in(project), set[Path]()
    for flag in ("-q", "-v"):
        for _ in range(8):
            done = cli(flag, *args, env=env)
            assert done.returncode == 5, done.stderr
            library = library_lines(project / "logs", seen)
            if library:
                break
        assert library and "pipeline aborted" in str(library[0]["detail"])
        if flag == "-q":
            assert one_line(done).startswith("predeploy: migration 2_bad failed"), done.stderr
            assert "error ignored" not in done.stderr
        else:
            assert "error ignored terminating" in done.stderr


def test_a_bad_env_name_is_a_usage_error(cli: Cli, project: Path) -> None:
    """`--env ""` meant dev and `--env ../etc` advised creating `.env.../etc`: a name that
    cannot name an env file is exit 2, one line naming it and the rule, nothing run."""
    for name in ("", "../etc", "a/b", "a.b", " ", "-x", "1st", "prod\n"):
        done = cli("status", "--env", name)
        assert done.returncode == 2, (name, done.stderr)
        line = one_line(done)
        assert line.startswith(f"predeploy: bad environment name {name!r}"), line
        assert "lowercase letters" in line
    assert not (project / ".pgdata").exists()
    assert "use --env staging" in one_line(cli("status", "--env", "Staging"))


def test_runbook_lines_paste_without_the_venv_activated(project: Path, database_url: str) -> None:
    """Installed as the README says and run as `.venv/bin/predeploy` with the venv not on
    PATH, the runbook said `predeploy rollback ...`: "command not found" when pasted. Its
    lines now name this installation's script, and a pasted one runs."""
    write_migrations(project / "migrations", {"1_a": "CREATE TABLE a (id int);"})
    (project / "migrations" / "1_a" / "down.sql").write_text("DROP TABLE a;")
    env = project_env(database_url, project)
    script = Path(sys.executable).parent / "predeploy"
    env["PATH"] = "/usr/bin:/bin"  # no predeploy there
    done = subprocess.run(
        [str(script), "migrate", "--env", "staging", "--yes", "--no-backup"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False,
        start_new_session=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rollback = next(line for line in done.stdout.splitlines() if " rollback " in line)
    assert rollback == f"{script} rollback --env staging --migrations 1_a --yes", done.stdout
    pasted = subprocess.run(
        ["bash", "-c", rollback],
        cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False,
        start_new_session=True,
    )  # fmt: skip
    assert pasted.returncode == 0, pasted.stderr
    assert query_value(database_url, "SELECT to_regclass('a')") is None


def test_a_failing_json_command_still_prints_one_json_object(
    cli: Cli, project: Path, database_url: str
) -> None:
    """`status --json` that fails (an unknown env, a closed port) printed nothing on
    stdout: now one object with the error line and the exit code; a command whose own
    report carries the outcome (`status --check --json`, exit 1) prints only that."""
    unknown = cli("status", "--env", "nosuch", "--json")
    assert unknown.returncode == 2
    assert json.loads(unknown.stdout)["exit_code"] == 2
    assert json.loads(unknown.stdout)["error"].startswith("unknown environment 'nosuch'")
    write_migrations(project / "migrations", {"1_a": "CREATE TABLE a (id bigint);"})
    closed = {"DATABASE_URL": "postgresql://u:p@127.0.0.1:1/db"}
    refused = cli(
        "status", "--env", "staging", "--json", env=project_env(database_url, project) | closed
    )
    assert refused.returncode == 3, refused.stderr
    assert json.loads(refused.stdout) == {
        "error": one_line(refused).removeprefix("predeploy: "),
        "exit_code": 3,
    }
    pending = cli(
        "status", "--env", "staging", "--check", "--json", env=project_env(database_url, project)
    )
    assert pending.returncode == 1, pending.stderr
    (report,) = [json.loads(line) for line in pending.stdout.splitlines()]
    assert "error" not in report


def test_on_a_terminal_what_the_report_says_is_said_once(project: Path, database_url: str) -> None:
    """On a terminal, `health` with a pending migration printed a `health_check` warning
    line and then the report's ✗ line (lint findings, plan warnings, blockers alike): now
    the report alone; with -v the event is there too; the log file always has it."""
    write_migrations(project / "migrations", {"1_a": "CREATE TABLE a (id bigint);"})
    env = {**os.environ, **project_env(database_url, project), "NO_COLOR": "1"}
    argv = [sys.executable, "-m", "predeploy", "health", "--env", "staging"]
    code, screen = run_in_terminal(argv, cwd=project, env=env)
    assert code == 7, screen
    assert "history" in screen and "1 pending" in screen
    assert "health_check" not in screen, screen
    code, loud = run_in_terminal([*argv[:3], "-v", *argv[3:]], cwd=project, env=env)
    assert code == 7 and "health_check" in loud, loud
    logged = "".join(p.read_text() for p in (project / "logs").glob("predeploy-*.log"))
    assert '"event": "health_check"' in logged


def test_status_shows_the_last_runs_in_columns_whatever_the_outcome_s_length() -> None:
    """A long outcome ("refused: confirmation (no terminal)") no longer runs into the count:
    each column is as wide as its longest value, two spaces apart."""
    at = datetime(2026, 12, 7, 16, 54, tzinfo=UTC)
    runs: list[dict[str, object]] = [
        {"started_at": at, "command": command, "outcome": outcome, "migrations": count,
         "operator": "ops", "host": "vps"}
        for command, outcome, count in (
            ("migrate", "refused: confirmation (no terminal)", 0),
            ("rollback", "rolled back", 2),
        )
    ]  # fmt: skip
    lines = render_runs(runs).splitlines()[2:]
    assert lines[0] == (
        "  2026-12-07 16:54:00  migrate   refused: confirmation (no terminal)  0 migration(s)"
        "  by ops@vps"
    )
    assert len({line.index(" migration(s)") for line in lines}) == 1  # one column


def test_json_on_a_terminal_keeps_info_lines_off_the_typed_question(
    project: Path, database_url: str, tmp_path: Path
) -> None:
    """`migrate --env prod --json > out.json` on a terminal put ~20 JSON info lines around
    "Type 'appdb' to go on:": now stderr on a terminal has warnings and errors only, as
    readable lines, whatever --json says (-v: every event); stdout keeps the one report."""
    write_migrations(project / "migrations", {"1_a": "CREATE TABLE a (id bigint);"})
    (project / "migrations" / "1_a" / "down.sql").write_text("DROP TABLE a;")
    write_migrations(project / "migrations", {"2_b": "CREATE TABLE b (id bigint);"})
    env = {**os.environ, **project_env(database_url, project), "NO_COLOR": "1"}
    name = database_url.rsplit("/", 1)[1]
    out = tmp_path / "out.json"
    program = f"exec {sys.executable} -m predeploy migrate --env prod --json > {out}"
    code, screen = run_in_terminal(
        ["/bin/sh", "-c", program], cwd=project, env=env, prompt=b"to go on:", answer=name
    )
    assert code == 0, screen
    assert "to go on:" in screen
    shown = [line for line in screen.splitlines() if line.lstrip().startswith("{")]
    assert shown == [], screen
    for event in ("backup_verified", "migration_applied", "run_finished", '"level": "info"'):
        assert event not in screen, screen
    report = json.loads(out.read_text())
    assert [m["name"] for m in report["applied"]] == ["1_a", "2_b"]
    logged = "".join(p.read_text() for p in (project / "logs").glob("predeploy-*.log"))
    assert '"level": "info"' in logged  # the log file keeps every event
    write_migrations(project / "migrations", {"3_c": "CREATE TABLE c (id bigint);"})
    verbose = f"exec {sys.executable} -m predeploy -v migrate --env prod --json > {out}"
    code, loud = run_in_terminal(
        ["/bin/sh", "-c", verbose], cwd=project, env=env, prompt=b"to go on:", answer=name
    )
    assert code == 0, loud
    assert "migration_applied" in loud and "to go on:" in loud, loud
    assert not [line for line in loud.splitlines() if line.lstrip().startswith("{")], loud
    assert [m["name"] for m in json.loads(out.read_text())["applied"]] == ["3_c"]
