"""`invoke maintenance` as cron runs it: its own lock, backup and retention, vacuum, report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from predeploy.commands.maintenance import MAINTENANCE_LOCK
from support.cli import Cli, run_invoke
from support.cron import as_cron
from support.pm2 import Pm2App
from support.project import write_migrations

pytestmark = pytest.mark.slow
CRONTAB = Path(__file__).parents[2] / "src" / "predeploy" / "examples" / "crontab.example"


@pytest.fixture
def prod(project: Path, database_url: str) -> dict[str, str]:
    """A prod project whose migrations are all applied."""
    write_migrations(project / "migrations", {"1_users": "CREATE TABLE users (id int);"})
    (project / ".env.prod").write_text(f"DATABASE_URL={database_url}\n")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (id int)")
    env = {"DATABASE_URL": database_url}
    assert (
        run_invoke(project, "resolve", "--env", "prod", "--applied", "1_users", env=env).returncode
        == 0
    )
    return env


def report_of(text: str) -> dict[str, object]:
    """The maintenance report: the one JSON object that is not a log event (--json puts the
    report on stdout, JSON log lines on stderr)."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    reports = [line for line in lines if "event" not in line]
    assert len(reports) == 1, reports
    assert all("event" in line for line in lines if line is not reports[0])
    return reports[0]


def test_all_well_is_exit_0_with_a_cron_backup(
    cli: Cli, prod: dict[str, str], project: Path
) -> None:
    done = cli("maintenance", "--env", "prod", "--json", env=prod)
    assert done.returncode == 0, done.stderr
    report = report_of(done.stdout)
    assert report["needs_attention"] == []
    assert [s["name"] for s in report["steps"]] == [
        "lock",
        "backup",
        "vacuum",
        "health",
        "drift",
        "logs",
    ]
    assert report["drift"]["drifted"] is False
    backup = report["backup"]
    assert isinstance(backup, dict)
    assert backup["path"].endswith("_cron.dump")
    assert Path(backup["path"]).is_file()


def test_pending_migration_needs_a_human(cli: Cli, prod: dict[str, str], project: Path) -> None:
    write_migrations(project / "migrations", {"2_posts": "CREATE TABLE posts (id int);"})
    done = cli("maintenance", "--env", "prod", "--json", env=prod)
    assert done.returncode == 1
    report = report_of(done.stdout)
    assert report["needs_attention"] == ["history: 1 pending: 2_posts"]
    # stderr: JSON log lines, then the one line that says what is wrong
    assert (
        done.stderr.strip().splitlines()[-1]
        == "predeploy: maintenance needs attention: history: 1 pending: 2_posts"
    )


def test_vacuum_analyze_when_enabled(cli: Cli, prod: dict[str, str], database_url: str) -> None:
    done = cli(
        "maintenance", "--env", "prod", "--json", env=prod | {"PREDEPLOY_MAINTENANCE_VACUUM": "1"}
    )
    assert done.returncode == 0, done.stderr
    assert report_of(done.stdout)["vacuumed"] is True
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL"
            " FROM pg_stat_user_tables WHERE relname = 'users'"
        ).fetchone()
    assert row == (True, True)


def test_held_lock_is_exit_6_at_once_naming_the_holder(
    cli: Cli, prod: dict[str, str], project: Path, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SET application_name = 'nightly-by-hand'")
        holder.execute("SELECT pg_advisory_lock(%s)", (MAINTENANCE_LOCK,))
        done = cli("maintenance", "--env", "prod", "--json", env=prod)
        # migrate's lock is another key: a deploy is not held up by a nightly run
        assert cli("migrate", "--env", "prod", "--yes", env=prod).returncode == 0
    assert done.returncode == 6
    assert "application nightly-by-hand" in done.stderr
    assert not (project / "backups" / "prod").exists()  # nothing was done


def test_two_runs_started_together_one_exits_6(
    project: Path, prod: dict[str, str], database_url: str
) -> None:
    # a backup that takes a while; a table made by hand, so the nightly report shows drift
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE events AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS body"
            " FROM generate_series(1, 400000) g"
        )
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | prod
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "predeploy", "maintenance", "--env", "prod", "--json"],
            cwd=project,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    outcomes = [(run.wait(timeout=120), run.communicate()[1]) for run in runs]
    assert sorted(code for code, _ in outcomes) == [1, 6], outcomes
    done = next(err for code, err in outcomes if code == 1)
    assert done.strip().splitlines()[-1] == (
        "predeploy: maintenance needs attention: drift: 1 difference(s) made by hand "
        "(predeploy drift --env prod)"
    )
    busy = next(err for code, err in outcomes if code == 6)
    assert "the maintenance lock (advisory lock 72707370) is held by pid" in busy
    assert len(list((project / "backups" / "prod").glob("*.dump"))) == 1


def test_retention_prunes_only_our_backups(cli: Cli, prod: dict[str, str], project: Path) -> None:
    folder = project / "backups" / "prod"
    assert cli("backup", "--env", "prod", env=prod).returncode == 0
    (first,) = folder.glob("*.dump")
    manifest = json.loads(Path(f"{first}.json").read_text())
    for days in (3, 2):  # two older backups of ours
        name = first.name.replace("_manual", f"_old{days}")
        shutil.copy(first, folder / name)
        created = datetime.now(UTC) - timedelta(days=days)
        (folder / f"{name}.json").write_text(
            json.dumps(manifest | {"file": name, "created_at": created.isoformat()})
        )
    foreign = [folder / "hand-made.dump", folder / "notes.txt", folder / "other.dump.json"]
    foreign[0].write_bytes(b"not ours")
    foreign[1].write_text("keep me")
    foreign[2].write_text(json.dumps(manifest | {"file": "hand-made.dump"}))

    done = cli("maintenance", "--env", "prod", "--json", env=prod | {"PREDEPLOY_BACKUP_KEEP": "2"})
    assert done.returncode == 0, done.stderr
    backup = report_of(done.stdout)["backup"]
    assert isinstance(backup, dict)
    assert sorted(Path(p).name for p in backup["pruned"]) == [
        first.name.replace("_manual", "_old2"),
        first.name.replace("_manual", "_old3"),
    ]
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted(
        [
            first.name,
            f"{first.name}.json",
            Path(backup["path"]).name,
            Path(backup["path"]).name + ".json",
            *(p.name for p in foreign),
        ]
    )


def test_crontab_line_in_crons_environment(
    pm2_app: Pm2App, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The crontab.example job as cron runs it: env -i, minimal PATH, started in $HOME."""
    project = pm2_app.project
    write_migrations(project / "migrations", {"1_users": "CREATE TABLE users (id int);"})
    (project / ".env.prod").write_text(
        f"DATABASE_URL={database_url}\nPREDEPLOY_PM2_APP=web\nPREDEPLOY_PM2_BIN={pm2_app.pm2_bin}\n"
        f"PREDEPLOY_HEALTHCHECK_URL={pm2_app.url}/health\n"
    )
    (project / ".venv").symlink_to(sys.prefix)
    (project / "logs").mkdir()
    job = (
        next(line for line in CRONTAB.read_text().splitlines() if line[:1].isdigit())
        .split(None, 5)[5]
        .replace("/srv/web/current", str(project))
    )
    home = tmp_path_factory.mktemp("home")

    def cron() -> subprocess.CompletedProcess[str]:
        pm2_home = pm2_app.environ["PM2_HOME"]
        return as_cron(["/bin/sh", "-c", job], home=home, SHELL="/bin/sh", PM2_HOME=pm2_home)

    done = cron()  # 1_users is pending: a human should look
    assert done.returncode == 0  # the echo after || ran: that is what cron mails
    assert done.stdout.startswith("predeploy maintenance exited 1 on ")
    log = project / "logs" / "maintenance-cron.log"
    lines = log.read_text().splitlines()
    assert lines[-1] == "predeploy: maintenance needs attention: history: 1 pending: 1_users"
    report = report_of("\n".join(lines[:-1]))
    checks = {c["name"]: c["ok"] for c in report["health"]["checks"]}
    assert checks == {"database": True, "history": False, "tables": True, "http": True, "pm2": True}

    assert run_invoke(project, "migrate", "--env", "prod", "--yes").returncode == 0
    log.unlink()
    done = cron()
    assert (done.returncode, done.stdout) == (0, "")  # nothing to mail
    assert report_of(log.read_text())["exit_code"] == 0


def test_inits_crontab_line_carries_the_pm2_home_it_ran_with(
    pm2_app: Pm2App, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`predeploy init` run with PM2_HOME exported prints a crontab line, a pm2 hook and a
    systemd service that carry it: the crontab line under cron's env -i (no PM2_HOME of its
    own) checks the app's pm2 (not ~/.pm2's, where no daemon runs)."""
    project = pm2_app.project
    write_migrations(project / "migrations", {"1_users": "CREATE TABLE users (id int);"})
    (project / ".env.prod").write_text(
        f"DATABASE_URL={database_url}\nPREDEPLOY_PM2_APP=web\nPREDEPLOY_PM2_BIN={pm2_app.pm2_bin}\n"
        f"PREDEPLOY_HEALTHCHECK_URL={pm2_app.url}/health\n"
    )
    home = pm2_app.environ["PM2_HOME"]
    init = run_invoke(project, "init", "--json", env={"PM2_HOME": home})
    assert init.returncode == 0, init.stderr
    adopted = json.loads(init.stdout)
    assert f"&& PM2_HOME={home} " in adopted["post_deploy"]
    assert f"\nEnvironment=PM2_HOME={home}\n" in adopted["systemd"]["predeploy-maintenance.service"]
    assert run_invoke(project, "migrate", "--env", "prod", "--yes").returncode == 0
    job = adopted["crontab"].split(None, 5)[5]
    assert f"&& PM2_HOME={home} " in job
    (project / "logs").mkdir(exist_ok=True)
    cron_home = tmp_path_factory.mktemp("home")
    done = as_cron(["/bin/sh", "-c", job], home=cron_home)
    assert (done.returncode, done.stdout) == (0, ""), done.stdout  # nothing to mail
    report = report_of((project / "logs" / "maintenance-cron.log").read_text())
    pm2 = next(c for c in report["health"]["checks"] if c["name"] == "pm2")  # type: ignore[index]
    assert pm2["ok"], pm2
