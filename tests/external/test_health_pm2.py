"""`predeploy health`'s pm2 check as cron runs it (env -i): no daemon started where none
runs, the app's pm2 found through HOME. Needs pm2 (the external marker)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.cron import as_cron
from support.pm2 import Pm2App


def _health_as_cron(project: Path, home: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """`predeploy health --env staging --json` as cron runs it: env -i, minimal PATH."""
    argv = [sys.executable, "-m", "predeploy", "health", "--env", "staging", "--json"]
    return as_cron(argv, home=home, cwd=project, **extra)


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
