"""`predeploy deploy` with a real pm2 running a real Node app from the example ecosystem file."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from predeploy.db.locks import MIGRATE_LOCK
from support.cli import Cli
from support.environ import OUR_VARIABLES
from support.hazards import children, wait_until
from support.pm2 import Pm2App
from support.project import write_migrations
from support.wayback import commands

pytestmark = pytest.mark.slow
SCRIPTS = Path(__file__).parents[2] / "src" / "predeploy" / "examples"


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


def local_pm2(pm2_app: Pm2App, deploy_env: dict[str, str]) -> dict[str, str]:
    """The project's own pm2 (node_modules/.bin/pm2, as `npm install pm2` makes it):
    PREDEPLOY_PM2_BIN unset, and no pm2 on PATH."""
    (pm2_app.project / "node_modules").symlink_to(pm2_app.pm2_bin.parents[1])
    dotenv = pm2_app.project / ".env.prod"
    dotenv.write_text(
        "".join(x for x in dotenv.read_text().splitlines(True) if "PREDEPLOY_PM2_BIN" not in x)
    )
    path = os.pathsep.join((str(Path(sys.executable).parent), "/usr/bin", "/bin"))
    assert shutil.which("pm2", path=path) is None
    return deploy_env | {"PATH": path}


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES}


def pasted(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A runbook line as an operator pastes it into a shell."""
    return subprocess.run(
        ["/bin/sh", "-c", line],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_failing_health_url_exits_7_with_a_runbook_that_runs_when_pasted(
    cli: Cli,
    pm2_app: Pm2App,
    deploy_env: dict[str, str],
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Exit 7 and a runbook whose pm2 lines name the pm2 deploy used (the project's own, by
    absolute path) and its PM2_HOME: pasted in another folder, in a shell whose PATH has no
    pm2 and that never heard of PM2_HOME, they act on the same app, and the rest undoes."""
    (pm2_app.project / "migrations" / "1_users" / "down.sql").write_text("DROP TABLE users;\n")
    (pm2_app.project / "sick").write_text("")  # the new release answers 503 on /health
    env = local_pm2(pm2_app, deploy_env) | {
        "PREDEPLOY_DEPLOY_WAIT": "3s",
        "PREDEPLOY_HEALTHCHECK_RETRIES": "1",
    }
    done = cli("deploy", "--env", "prod", "--yes", "--json", env=env)
    assert done.returncode == 7, done.stderr
    assert "is not healthy 3s (PREDEPLOY_DEPLOY_WAIT) after the reload: http: GET" in done.stderr
    runbook = json.loads(done.stdout)["runbook"]
    pm2 = f"PM2_HOME={pm2_app.environ['PM2_HOME']} {pm2_app.project}/node_modules/.bin/pm2"
    assert f"{pm2} logs web --lines 100 --nostream" in runbook
    assert f"{pm2} reload web" in runbook
    assert "predeploy rollback --env prod --migrations 1_users --yes" in runbook
    assert any(line.startswith("predeploy restore --env prod --backup ") for line in runbook)
    assert runbook.index(f"{pm2} stop web") < runbook.index(f"{pm2} start web")
    health = f"PM2_HOME={pm2_app.environ['PM2_HOME']} predeploy health --env prod"
    assert runbook[-1] == health  # it asks pm2 too: the same daemon as the pm2 lines

    # the runbook, pasted as printed (comments skipped), undoes the run
    (pm2_app.project / "sick").unlink()
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    bare = {"PATH": env["PATH"], "HOME": str(elsewhere)}
    pids = {p["pid"] for p in pm2_app.processes()}
    for line in commands(runbook):
        if line.startswith("PM2_HOME="):
            ran = pasted(line, elsewhere, bare)
        else:
            ran = pasted(line, pm2_app.project, _environ() | env)
        assert ran.returncode == 0, (line, ran.stdout, ran.stderr)
        if " rollback " in line:
            break  # the restore is the alternative to the rollback
    assert pids.isdisjoint({p["pid"] for p in pm2_app.processes()})  # the pasted reload
    assert applied(database_url) == ["1_users"]  # rolled back, the row kept
    without_home = {k: v for k, v in (_environ() | env).items() if k != "PM2_HOME"}
    checked = pasted(health, pm2_app.project, without_home)  # 1_users is pending again: 7
    assert (
        checked.stderr.strip().splitlines()[-1]
        == "predeploy: unhealthy: history: 1 pending: 1_users"
    )
    assert '"check": "pm2", "ok": true' in checked.stderr, checked.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('users')").fetchone() == (None,)


def test_failed_post_deploy_migration_runbook_lists_what_the_pre_deploy_phase_applied(
    cli: Cli, pm2_app: Pm2App, deploy_env: dict[str, str], database_url: str
) -> None:
    """Pre-deploy migrations applied, the release reloaded, then a post-deploy migration
    fails (exit 5): the runbook does not say the deploy changed nothing; it names the
    pre-deploy migrations with their rollback (after going back to the previous release),
    and the command that applies the post-deploy phase once fixed."""
    migrations = pm2_app.project / "migrations"
    (migrations / "1_users" / "down.sql").write_text("DROP TABLE users;\n")
    write_migrations(
        migrations,
        {"2_broken": "-- predeploy: post-deploy\nALTER TABLE nope ADD COLUMN x int;"},
    )
    done = cli("deploy", "--env", "prod", "--yes", "--json", env=deploy_env)
    assert done.returncode == 5, done.stderr
    runbook = json.loads(done.stdout)["runbook"]
    assert not any("changed nothing in the database: there is nothing" in x for x in runbook)
    assert "# the post-deploy phase changed nothing in the database" in runbook
    assert "# before the reload, this deploy applied 1 pre-deploy migration(s): 1_users" in runbook
    words = [shlex.split(line) for line in commands(runbook)]
    post = ["predeploy", "migrate", "--env", "prod", "--post-deploy", "--yes"]  # as asked
    rollback = ["predeploy", "rollback", "--env", "prod", "--migrations", "1_users", "--yes"]
    assert words.index(post) < words.index(rollback)
    reload = next(w for w in words if w[-2:] == ["reload", "web"])
    assert words.index(reload) < words.index(rollback)  # the previous release first
    assert any(w[:4] == ["predeploy", "restore", "--env", "prod"] for w in words)
    assert applied(database_url) == ["1_users"]


# a new release that takes long to listen: pm2's reload waits for it
SLOW_SERVER = """\
const http = require('http');
setTimeout(() => http.createServer((req, res) => res.end('new')).listen(process.env.PORT), 60000);
"""


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")
    except OSError:
        return []


def test_a_signal_during_the_reload_says_the_reload_may_have_happened(
    pm2_app: Pm2App,
    deploy_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """SIGTERM while `pm2 reload web` runs: exit 143, and the runbook says the reload was in
    flight (pm2's daemon goes on with it), with the pm2 describe line to see what runs,
    never that the app was not reloaded."""
    (pm2_app.project / "server.js").write_text(SLOW_SERVER)
    out = tmp_path_factory.mktemp("out") / "stdout"
    environ = _environ() | deploy_env
    with out.open("w") as sink:
        deploying = subprocess.Popen(
            [sys.executable, "-m", "predeploy", "deploy", "--env", "prod", "--yes", "--json"],
            cwd=pm2_app.project,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            wait_until(
                lambda: any(
                    _cmdline(pid)[-2:] == ["reload", "web"] for pid in children(deploying.pid)
                ),
                timeout=60,
                what="pm2 reload web running",
            )
            deploying.send_signal(signal.SIGTERM)
            _, stderr = deploying.communicate(timeout=60)
        finally:
            if deploying.poll() is None:
                deploying.kill()
                deploying.wait()
    assert deploying.returncode == 143, stderr
    runbook = json.loads(out.read_text())["runbook"]
    assert runbook[0].startswith("# pm2 reload web was in flight when this deploy was interrupted")
    assert not any("not reloaded" in line for line in runbook)
    describe = next(line for line in runbook if line.endswith(" describe web"))
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shown = pasted(describe, elsewhere, {"PATH": "/usr/bin:/bin", "HOME": str(elsewhere)})
    assert shown.returncode == 0, shown.stderr
    assert "web" in shown.stdout


def test_dry_run_says_what_it_would_do_and_does_nothing(
    cli: Cli, pm2_app: Pm2App, deploy_env: dict[str, str], database_url: str
) -> None:
    """--dry-run: the SQL of both phases and the reload it would run; nothing applied, no
    reload, and never the word deployed."""
    write_migrations(
        pm2_app.project / "migrations",
        {"2_retire": "-- predeploy: post-deploy\nALTER TABLE users ADD COLUMN retired int;"},
    )
    pids = pm2_app.processes()
    done = cli("deploy", "--env", "prod", "--dry-run", env=deploy_env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "deployed" not in out
    assert "-- 1_users/migration.sql\nCREATE TABLE users (id int);" in out
    assert "then it would run pm2 reload web (2 process(es), cluster mode)" in out
    assert "then apply 1 post-deploy migration(s): 2_retire" in out
    assert "ALTER TABLE users ADD COLUMN retired int;" in out
    assert out.rstrip().endswith("dry run: nothing was changed; web was not reloaded")
    assert pm2_app.processes() == pids
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('users')").fetchone() == (None,)
    data = json.loads(cli("deploy", "--env", "prod", "--dry-run", "--json", env=deploy_env).stdout)
    assert data["dry_run"] is True
    assert [p["name"] for p in data["would_apply_post_deploy"]] == ["2_retire"]


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


def test_a_refused_deploy_runbook_runs_the_deploy_again_as_it_was_asked(
    cli: Cli, pm2_app: Pm2App, deploy_env: dict[str, str], database_url: str
) -> None:
    """Refused on phase order (5), on a held lock (6), without a terminal (8): the runbook
    says to run the deploy again, with the flags it had (--yes, --restart), never a bare
    migrate (which reloads nothing and skips the post-deploy phase); pasted once the cause
    is gone, that line deploys: both phases applied, pm2 reloaded."""
    migrations = pm2_app.project / "migrations"
    write_migrations(
        migrations,
        {"0_retire": "-- predeploy: post-deploy\nCREATE TABLE retired (id int);"},
    )

    def again(done: subprocess.CompletedProcess[str], code: int) -> str:
        assert done.returncode == code, done.stderr
        runbook = json.loads(done.stdout)["runbook"]
        assert "# once the cause (the error line) is dealt with, run it again:" in runbook
        assert not any(" migrate " in line for line in commands(runbook)), runbook
        return commands(runbook)[-1]

    order = cli("deploy", "--env", "prod", "--yes", "--json", env=deploy_env)
    assert again(order, 5) == "predeploy deploy --env prod --yes"
    (migrations / "0_retire").rename(migrations / "2_retire")  # the cause, dealt with
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
        busy = cli(
            "deploy",
            "--env",
            "prod",
            "--yes",
            "--restart",
            "--json",
            env=deploy_env | {"PREDEPLOY_LOCK_WAIT": "1s"},
        )
    line = again(busy, 6)
    assert line == "predeploy deploy --env prod --yes --restart"
    bare = cli("deploy", "--env", "prod", "--json", env=deploy_env)
    assert again(bare, 8) == "predeploy deploy --env prod"
    with psycopg.connect(database_url) as conn:  # none of the three changed anything
        assert conn.execute("SELECT to_regclass('users')").fetchone() == (None,)

    pids = {p["pid"] for p in pm2_app.processes()}
    ran = pasted(line, pm2_app.project, _environ() | deploy_env)
    assert ran.returncode == 0, (ran.stdout, ran.stderr)
    assert applied(database_url) == ["1_users", "2_retire"]
    assert pids.isdisjoint({p["pid"] for p in pm2_app.processes()})


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
