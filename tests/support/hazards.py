"""Helpers for the hazard tests: never hang, never crash, never leak.

Lock holders are real sessions; waits synchronise on what pg_stat_activity, pg_locks and
/proc show, polled, never on a guessed sleep.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

from support.cli import Cli

# small limits, so that every bounded wait ends within a test's budget
SMALL = {
    "PREDEPLOY_LOCK_TIMEOUT": "200ms",
    "PREDEPLOY_LOCK_WAIT": "2s",
    "PREDEPLOY_BLOCKER_WAIT": "1s",
    "PREDEPLOY_LOCK_RETRIES": "1",
    "PREDEPLOY_CONNECT_TIMEOUT": "5s",
}


def project_env(database_url: str, project: Path, **extra: str) -> dict[str, str]:
    """The environment of a `predeploy` run in ``project`` against ``database_url``."""
    return {
        "DATABASE_URL": database_url,
        "PREDEPLOY_MIGRATIONS_DIR": str(project / "migrations"),
        "PREDEPLOY_BACKUP_DIR": str(project / "backups"),
        "PREDEPLOY_LOG_DIR": str(project / "logs"),
        **SMALL,
        **extra,
    }


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed run printed on stderr (log events are JSON lines); no traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    assert "Traceback" not in done.stdout, done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def timed(
    cli: Cli, *args: str, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``predeploy ARGS``; the result and how long it took, in seconds."""
    started = time.monotonic()
    done = cli(*args, env=env)
    return done, time.monotonic() - started


def at_once(
    cli: Cli, runs: list[tuple[str, ...]], *, env: dict[str, str]
) -> list[tuple[subprocess.CompletedProcess[str], float]]:
    """Every ``predeploy ARGS`` of ``runs`` at the same time (independent runs: it saves the
    interpreters' start-up); each result with its own duration, in order."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with ThreadPoolExecutor(len(runs)) as pool:
        return list(pool.map(lambda args: timed(cli, *args, env=env), runs))


def wait_until(condition: Callable[[], object], *, timeout: float = 15.0, what: str = "") -> object:
    """Poll ``condition`` until it returns something true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.01)


def query_value(url: str, query: str, *params: object) -> object:
    """The first column of the first row of ``query`` (None without a row)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return row[0] if row else None


@contextlib.contextmanager
def holding(url: str, *statements: str) -> Iterator[int]:
    """A session that ran ``statements`` in an open transaction and sits idle; its pid."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("BEGIN")
        for statement in statements:
            conn.execute(statement)
        yield conn.info.backend_pid


@contextlib.contextmanager
def queued(url: str, statement: str) -> Iterator[int]:
    """A session whose ``statement`` waits for a lock (in a thread); its pid. Cancelled after."""
    conn = psycopg.connect(url, autocommit=True)
    pid = conn.info.backend_pid

    def run() -> None:
        with contextlib.suppress(psycopg.Error):
            conn.execute(statement)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(
        lambda: query_value(
            url, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", pid
        ),
        what=f"pid {pid} to wait for its lock",
    )
    try:
        yield pid
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        thread.join(10)
        conn.close()


def predeploy_sessions(url: str) -> list[tuple[int, str]]:
    """(pid, application_name) of every session of predeploy or its programs on the server."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, application_name FROM pg_stat_activity"
            " WHERE application_name LIKE 'predeploy%%' OR application_name IN"
            " ('pg_dump', 'pg_restore', 'psql')"
        ).fetchall()
    return [(int(pid), str(name)) for pid, name in rows]


def children(pid: int) -> list[int]:
    """Every live descendant of process ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def program_of(pid: int) -> str:
    """The program name of process ``pid`` ('' when gone)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def files_holding(folder: Path, secret: str) -> list[Path]:
    """Every regular file under ``folder`` whose bytes contain ``secret``."""
    needle = secret.encode()
    found = []
    for path in folder.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                found.append(path)
        except OSError:
            continue
    return found


class Background:
    """``predeploy ARGS`` running in the background, its output going to files (a full pipe
    never blocks it)."""

    def __init__(
        self, project: Path, *args: str, env: dict[str, str], tmpdir: Path | None = None
    ) -> None:
        import sys  # noqa: PLC0415

        from support.environ import OUR_VARIABLES  # noqa: PLC0415

        environ = {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES}
        environ.update(env)
        if tmpdir is not None:
            environ["TMPDIR"] = str(tmpdir)
        self.args = args
        out = project / "out"
        out.mkdir(exist_ok=True)
        self._out = (out / f"{os.getpid()}-{time.monotonic_ns()}.stdout").open("w+")
        self._err = (out / f"{os.getpid()}-{time.monotonic_ns()}.stderr").open("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "predeploy", *args],
            cwd=project,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,
        )
        self.pid = self.process.pid

    def finish(self, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Wait (bounded) for its end; its exit code and output."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"predeploy {' '.join(self.args)} did not end in {timeout}s"
            ) from None
        self._out.seek(0)
        self._err.seek(0)
        done = subprocess.CompletedProcess(
            list(self.args), code, self._out.read(), self._err.read()
        )
        self._out.close()
        self._err.close()
        return done

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
