"""`invoke health`: each check's name, ok, detail and duration; exit 7 when one fails."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from predeploy.commands import health
from support import migrating
from support.cli import Cli
from support.pm2 import Pm2App
from support.project import MakeSettings, write_migrations


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[str]:
    """A real HTTP server on loopback: /health answers 200, anything else 503."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_healthy_database_and_url(
    make_settings: MakeSettings, migrations_dir: Path, web: str
) -> None:
    write_migrations(migrations_dir, {"1_users": "CREATE TABLE users (id int);"})
    settings = make_settings(PREDEPLOY_HEALTHCHECK_URL=f"{web}/health")
    migrating.migrate(settings)
    report = health.run(settings)
    assert report.ok, report.summary()
    by_name = {c.name: c for c in report.checks}
    assert list(by_name) == ["database", "history", "tables", "http"]
    assert "1 applied" in by_name["history"].detail
    assert any(t["table"] == "public.users" for t in by_name["tables"].data["largest"])
    assert by_name["http"].data == {"status": 200, "attempts": 1}
    assert all(c.seconds >= 0 for c in report.checks)


def test_pending_migration_and_failing_url_are_failed_checks(
    make_settings: MakeSettings, migrations_dir: Path, web: str
) -> None:
    write_migrations(migrations_dir, {"1_users": "CREATE TABLE users (id int);"})
    settings = make_settings(
        PREDEPLOY_HEALTHCHECK_URL=f"{web}/down",
        PREDEPLOY_HEALTHCHECK_RETRIES="2",
        PREDEPLOY_HEALTHCHECK_TIMEOUT="1s",
    )
    report = health.run(settings)
    failed = {c.name: c.detail for c in report.failed}
    assert failed["history"] == "1 pending: 1_users"
    assert failed["http"].endswith("HTTP 503 after 2 tries (timeout 1s each)")


def test_unreachable_url_is_named_without_its_password(make_settings: MakeSettings) -> None:
    check = health.check_http("http://ops:s3cret@127.0.0.1:9/health", timeout=1, retries=1, pause=0)
    assert not check.ok
    assert "s3cret" not in check.detail
    assert "ops:***@127.0.0.1:9" in check.detail


def test_cli_exits_7_with_each_check_in_json(
    cli: Cli, database_url: str, tmp_path: Path, web: str
) -> None:
    (tmp_path / "migrations").mkdir()
    env = {"DATABASE_URL": database_url, "PREDEPLOY_HEALTHCHECK_URL": f"{web}/nope"}
    env |= {"PREDEPLOY_HEALTHCHECK_RETRIES": "1", "PREDEPLOY_LOG_DIR": str(tmp_path / "logs")}
    done = cli("health", "--env", "staging", "--json", env=env)
    assert done.returncode == 7, done.stderr
    report = json.loads(done.stdout)
    assert [(c["name"], c["ok"]) for c in report["checks"]] == [
        ("database", True),
        ("history", True),
        ("tables", True),
        ("http", False),
    ]
    assert set(report["checks"][0]) >= {"name", "ok", "detail", "seconds"}
    assert done.stderr.strip().splitlines()[-1].startswith("predeploy: unhealthy: http: GET")


def test_cli_unreachable_database_is_a_failed_check(cli: Cli, tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://app:pw@127.0.0.1:9/app", "PREDEPLOY_CONNECT_TIMEOUT": "1s"}
    done = cli(
        "health", "--env", "staging", "--json", env=env | {"PREDEPLOY_LOG_DIR": str(tmp_path)}
    )
    assert done.returncode == 7
    checks = json.loads(done.stdout)["checks"]
    assert checks[0]["name"] == "database"
    assert "connection refused" in checks[0]["detail"]
    assert "Traceback" not in done.stderr


def _health_as_cron(project: Path, home: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """`predeploy health --env staging --json` as cron runs it: env -i, minimal PATH."""
    return subprocess.run(
        [
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            f"HOME={home}",
            *(f"{k}={v}" for k, v in extra.items()),
            sys.executable,
            "-m",
            "predeploy",
            "health",
            "--env",
            "staging",
            "--json",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _pm2_project(project: Path, database_url: str, pm2_bin: Path) -> None:
    (project / "migrations").mkdir(exist_ok=True)
    (project / ".env.staging").write_text(
        f"DATABASE_URL={database_url}\nPREDEPLOY_PM2_APP=web\nPREDEPLOY_PM2_BIN={pm2_bin}\n"
        f"PREDEPLOY_LOG_DIR={project / 'logs'}\n"
    )


def test_pm2_check_without_a_pm2_daemon_starts_none(
    project: Path, database_url: str, pm2_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Under cron's env -i, no pm2 daemon for the user's PM2_HOME: the pm2 check is not run
    (pm2 would start an empty daemon) and fails saying why; no daemon was started, neither
    in ~/.pm2 nor in pm2's /etc/.pm2 fallback, nor in a named PM2_HOME."""
    _pm2_project(project, database_url, pm2_bin)
    home = tmp_path_factory.mktemp("home")
    etc_before = Path("/etc/.pm2").exists()
    done = _health_as_cron(project, home)
    assert done.returncode == 7, done.stderr
    pm2 = {c["name"]: c for c in json.loads(done.stdout)["checks"]}["pm2"]
    assert not pm2["ok"] and pm2["data"] == {"skipped": True}
    assert pm2["detail"].startswith(f"not checked: no pm2 daemon runs for PM2_HOME {home}/.pm2")
    assert not (home / ".pm2").exists()
    assert Path("/etc/.pm2").exists() == etc_before
    named = tmp_path_factory.mktemp("pm2home")
    (named / "pm2.pid").write_text("999999999\n")  # a daemon long gone
    done = _health_as_cron(project, home, PM2_HOME=str(named))
    assert done.returncode == 7, done.stderr
    assert f"PM2_HOME {named}" in done.stdout
    assert sorted(p.name for p in named.iterdir()) == ["pm2.pid"]


def test_pm2_check_under_env_i_finds_the_apps_pm2_through_home(
    pm2_app: Pm2App, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """env -i with HOME only: the user's ~/.pm2 (here the app's PM2_HOME) is the pm2 asked."""
    _pm2_project(pm2_app.project, database_url, pm2_app.pm2_bin)
    home = tmp_path_factory.mktemp("home")
    (home / ".pm2").symlink_to(pm2_app.environ["PM2_HOME"])
    done = _health_as_cron(pm2_app.project, home)
    pm2 = {c["name"]: c for c in json.loads(done.stdout)["checks"]}["pm2"]
    assert pm2["ok"], pm2
    assert pm2["detail"].startswith("web: 2 online")
