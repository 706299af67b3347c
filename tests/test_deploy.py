"""`predeploy deploy` with a real pm2 running a real Node app from the example ecosystem file."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from conftest import Cli, Pm2App, write_migrations

pytestmark = pytest.mark.slow
SCRIPTS = Path(__file__).parents[1] / "src" / "predeploy" / "examples"


@pytest.fixture
def deploy_env(pm2_app: Pm2App, database_url: str) -> dict[str, str]:
    """.env.prod of the project: the database, the app, pm2, the health URL."""
    write_migrations(pm2_app.project / "migrations", {"1_users": "CREATE TABLE users (id int);"})
    settings = {
        "DATABASE_URL": database_url,
        "PREDEPLOY_PM2_APP": "web",
        "PREDEPLOY_PM2_BIN": str(pm2_app.pm2_bin),
        "PREDEPLOY_HEALTHCHECK_URL": f"{pm2_app.url}/health",
        "PREDEPLOY_DEPLOY_WAIT": "20s",
    }
    (pm2_app.project / ".env.prod").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    return pm2_app.environ


def applied(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT migration_name FROM _prisma_migrations ORDER BY 1")
        return [name for (name,) in rows]


def test_deploy_migrates_then_reloads_and_waits_until_healthy(
    cli: Cli, pm2_app: Pm2App, deploy_env: dict[str, str], database_url: str
) -> None:
    before = pm2_app.processes()
    done = cli("deploy", "--env", "prod", "--yes", "--json", env=deploy_env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [s["name"] for s in report["steps"]] == ["pm2", "reload", "healthy"]
    assert report["migrate"]["applied"][0]["name"] == "1_users"
    assert report["migrate"]["backup"]["path"]  # prod: a verified backup first
    assert applied(database_url) == ["1_users"]
    after = pm2_app.processes()
    assert len(after) == 2
    assert all(p["status"] == "online" for p in after)
    assert {p["pid"] for p in after}.isdisjoint({p["pid"] for p in before})
    assert sum(int(str(p["restarts"])) for p in after) > sum(
        int(str(p["restarts"])) for p in before
    )
    assert {c["name"]: c["ok"] for c in report["health"]["checks"]}["pm2"] is True


def test_nothing_pending_still_reloads_without_backup(
    cli: Cli, pm2_app: Pm2App, deploy_env: dict[str, str]
) -> None:
    assert cli("deploy", "--env", "prod", "--yes", env=deploy_env).returncode == 0
    pids = {p["pid"] for p in pm2_app.processes()}
    done = cli("deploy", "--env", "prod", "--yes", "--restart", "--json", env=deploy_env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["migrate"]["backup"] is None
    assert report["migrate"]["pending"] == []
    assert [s["name"] for s in report["steps"]] == ["pm2", "restart", "healthy"]
    assert pids.isdisjoint({p["pid"] for p in pm2_app.processes()})


def test_failing_health_url_exits_7_with_the_runbook(
    cli: Cli, pm2_app: Pm2App, deploy_env: dict[str, str], database_url: str
) -> None:
    (pm2_app.project / "migrations" / "1_users" / "down.sql").write_text("DROP TABLE users;\n")
    (pm2_app.project / "sick").write_text("")  # the new release answers 503 on /health
    env = deploy_env | {"PREDEPLOY_DEPLOY_WAIT": "3s", "PREDEPLOY_HEALTHCHECK_RETRIES": "1"}
    done = cli("deploy", "--env", "prod", "--yes", "--json", env=env)
    assert done.returncode == 7, done.stderr
    assert "is not healthy 3s (PREDEPLOY_DEPLOY_WAIT) after the reload: http: GET" in done.stderr
    runbook = json.loads(done.stdout)["runbook"]
    assert "pm2 logs web --lines 100 --nostream" in runbook
    assert "pm2 reload web" in runbook
    assert "predeploy rollback --env prod --migrations 1_users --yes" in runbook
    assert any(line.startswith("predeploy restore --env prod --backup ") for line in runbook)
    assert runbook.index("pm2 stop web") < runbook.index("pm2 start web")

    # the runbook, pasted as printed (comments skipped), undoes the run
    (pm2_app.project / "sick").unlink()
    invoke = [sys.executable, "-m", "predeploy"]
    environ = {**os.environ, **env}
    for line in runbook:
        if line.startswith("#") or line.startswith("pm2 logs"):
            continue
        argv = shlex.split(line)
        program = invoke + argv[1:] if argv[0] == "predeploy" else [str(pm2_app.pm2_bin), *argv[1:]]
        subprocess.run(
            program,
            cwd=pm2_app.project,
            env=environ,
            check=True,
            capture_output=True,
            start_new_session=True,
        )
        if argv[:2] == ["predeploy", "rollback"]:
            break  # the restore is the alternative to the rollback
    assert applied(database_url) == ["1_users"]  # rolled back, the row kept
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('users')").fetchone() == (None,)


def test_failed_migration_exits_5_and_leaves_the_app_alone(
    cli: Cli, pm2_app: Pm2App, deploy_env: dict[str, str]
) -> None:
    """A migration the server rejects (the table it alters does not exist): exit 5, no
    reload, and the runbook says pm2 still runs the release it ran before."""
    broken = {"2_broken": "ALTER TABLE nope ADD COLUMN x bigint;"}
    write_migrations(pm2_app.project / "migrations", broken)
    pids = pm2_app.processes()
    done = cli("deploy", "--env", "prod", "--yes", "--json", env=deploy_env)
    assert done.returncode == 5, done.stderr
    report = json.loads(done.stdout)
    assert (
        report["runbook"][0]
        == "# web was not reloaded: pm2 still runs the release it ran before this deploy"
    )
    assert pm2_app.processes() == pids


def test_no_pm2_daemon_is_exit_2_before_anything_and_starts_none(
    cli: Cli, pm2_app: Pm2App, deploy_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """A PM2_HOME where no pm2 daemon runs (the wrong user's, a typo): exit 2 naming it,
    nothing migrated, and no daemon started there."""
    empty = tmp_path / "other-pm2"
    empty.mkdir()
    done = cli("deploy", "--env", "prod", "--yes", env=deploy_env | {"PM2_HOME": str(empty)})
    assert done.returncode == 2, done.stderr
    assert f"no pm2 daemon runs for PM2_HOME {empty}, user " in done.stderr
    assert list(empty.iterdir()) == []
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('_prisma_migrations')").fetchone() == (None,)


def test_unknown_app_or_no_pm2_is_exit_2_before_anything(
    cli: Cli, pm2_app: Pm2App, deploy_env: dict[str, str], database_url: str
) -> None:
    done = cli("deploy", "--env", "prod", "--yes", env=deploy_env | {"PREDEPLOY_PM2_APP": "api"})
    assert done.returncode == 2
    assert f"pm2 has no process named api (PM2_HOME {pm2_app.environ['PM2_HOME']}" in done.stderr
    dotenv = pm2_app.project / ".env.prod"
    dotenv.write_text(
        "".join(x for x in dotenv.read_text().splitlines(True) if "PREDEPLOY_PM2_BIN" not in x)
    )
    done = cli("deploy", "--env", "prod", "--yes", env=deploy_env | {"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "pm2 not found" in done.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('_prisma_migrations')").fetchone() == (None,)


@pytest.mark.parametrize("source", ["ecosystem.config.js", "pm2-post-deploy.sh"])
def test_post_deploy_hook_runs_as_pm2_runs_it(
    pm2_app: Pm2App, deploy_env: dict[str, str], database_url: str, source: str
) -> None:
    """The ecosystem file's post-deploy line (or the script that does the same), in a bare
    environment, in the project folder: npm ci, then predeploy deploy --env prod --yes."""
    project = pm2_app.project
    (project / "scripts").mkdir()
    shutil.copy2(SCRIPTS / "pm2-post-deploy.sh", project / "scripts")
    hook = subprocess.run(
        [
            "node",
            "-e",
            "console.log(require('./ecosystem.config.js').deploy.production['post-deploy'])",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert hook.endswith(".venv/bin/predeploy deploy --env prod --yes")
    if source == "pm2-post-deploy.sh":
        hook = "scripts/pm2-post-deploy.sh"
    (project / "package.json").write_text('{"name": "web", "version": "1.0.0", "private": true}\n')
    subprocess.run(
        ["npm", "install", "--package-lock-only", "--no-audit", "--no-fund"],
        cwd=project,
        check=True,
        capture_output=True,
    )
    (project / ".venv").symlink_to(sys.prefix)
    pids = {p["pid"] for p in pm2_app.processes()}
    done = subprocess.run(
        [
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            f"HOME={project}",
            f"PM2_HOME={pm2_app.environ['PM2_HOME']}",
            "/bin/sh",
            "-c",
            hook,
        ],
        cwd=project,
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.lstrip().startswith("up to date")  # npm ci ran first
    assert applied(database_url) == ["1_users"]
    assert pids.isdisjoint({p["pid"] for p in pm2_app.processes()})
