"""Notifications from real runs: one message per run, its fields, never in the run's way."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from support.cli import Cli
from support.pm2 import Pm2App
from support.project import write_migrations
from support.receivers import Receiver

pytestmark = pytest.mark.usefixtures("apprise_loaded")


def _env(database_url: str, migrations_dir: Path, tmp_path: Path, *urls: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir),
        "PREDEPLOY_BACKUP_DIR": str(tmp_path / "backups"),
        "PREDEPLOY_NOTIFY_URLS": ",".join(urls),
        "PREDEPLOY_NOTIFY_TIMEOUT": "1s",
    }


def test_prod_migrate_delivers_one_message_with_its_fields(
    cli: Cli, receiver: Receiver, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """A prod migrate (a change in a protected env): one JSON message naming the env, the
    applied migration, the backup and the operator, with no password in it."""
    write_migrations(migrations_dir, {"1_users": "CREATE TABLE users (id int);"})
    env = _env(database_url, migrations_dir, tmp_path, receiver.url())
    done = cli("migrate", "--env", "prod", "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    (payload,) = receiver.payloads()
    event = payload["event"]
    assert (event["command"], event["env"], event["outcome"]) == ("migrate", "prod", "ok")
    assert [a["name"] for a in event["applied"]] == ["1_users"]
    assert event["backup"] == json.loads(done.stdout)["backup"]["path"]
    assert event["operator"] and event["host"]
    password = database_url.split(":")[2].split("@", maxsplit=1)[0]
    assert password not in json.dumps(payload)
    assert "1_users" in payload["title"] + payload["message"]


def test_failing_receivers_change_neither_the_exit_code_nor_the_run(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path, silent_port: int
) -> None:
    """A receiver that never answers and one that refuses: the migration applies, exit 0,
    the report warns, and the wait is bounded by PREDEPLOY_NOTIFY_TIMEOUT."""
    write_migrations(migrations_dir, {"1_users": "CREATE TABLE users (id int);"})
    urls = (f"json://127.0.0.1:{silent_port}/hook", "json://127.0.0.1:1/hook")
    env = _env(database_url, migrations_dir, tmp_path, *urls)
    started = time.monotonic()
    done = cli("migrate", "--env", "prod", "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 12  # the run itself plus at most the 1 s timeout
    warnings = json.loads(done.stdout)["warnings"]
    assert len([w for w in warnings if "notification" in w]) == 2, warnings
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('users')").fetchone() != (None,)


def test_failed_deploy_and_failed_maintenance_each_deliver_one_message(
    cli: Cli, receiver: Receiver, pm2_app: Pm2App, database_url: str
) -> None:
    """A deploy whose migration fails, then a maintenance whose health check fails: one
    failure message each, with the error line and the runbook's first commands."""
    project = pm2_app.project
    write_migrations(project / "migrations", {"1_broken": "CREATE TABLE oops (;"})
    env = {
        "DATABASE_URL": database_url,
        "PREDEPLOY_PM2_APP": "web",
        "PREDEPLOY_PM2_BIN": str(pm2_app.pm2_bin),
        "PREDEPLOY_NOTIFY_URLS": receiver.url(),
        **pm2_app.environ,
    }
    deployed = cli("deploy", "--env", "staging", "--yes", env=env)
    assert deployed.returncode == 5, deployed.stderr
    (deploy,) = receiver.payloads()
    assert (deploy["event"]["command"], deploy["event"]["outcome"]) == ("deploy", "failed")
    assert "1_broken failed" in deploy["event"]["error"]
    assert deploy["event"]["runbook"]
    (project / "migrations" / "1_broken").rename(project / "migrations" / ".1_broken")
    env["PREDEPLOY_HEALTHCHECK_URL"] = f"{pm2_app.url}/nowhere"  # answers 503
    env["PREDEPLOY_HEALTHCHECK_RETRIES"] = "1"
    nightly = cli("maintenance", "--env", "staging", env=env)
    assert nightly.returncode == 1, nightly.stderr
    _deploy, maintenance = receiver.payloads()
    assert maintenance["event"]["command"] == "maintenance"
    assert maintenance["event"]["outcome"] == "needs attention"
    assert "http" in maintenance["event"]["error"]


def test_a_two_phase_deploy_notification_has_both_phases_and_their_whole_undo(
    cli: Cli, receiver: Receiver, pm2_app: Pm2App, database_url: str, tmp_path: Path
) -> None:
    """A prod deploy that applies a pre-deploy and a post-deploy migration: one message
    naming both, with the deploy's runbook whole: the post-deploy undo, the previous
    release back, then the pre-deploy undo."""
    migrations = pm2_app.project / "migrations"
    write_migrations(
        migrations,
        {
            "1_users": "CREATE TABLE users (id int, name text);",
            "2_retire": "-- predeploy: post-deploy\nALTER TABLE users DROP COLUMN name;",
        },
    )
    (migrations / "1_users" / "down.sql").write_text("DROP TABLE users;\n")
    (migrations / "2_retire" / "down.sql").write_text("ALTER TABLE users ADD COLUMN name text;\n")
    env = {
        "DATABASE_URL": database_url,
        "PREDEPLOY_BACKUP_DIR": str(tmp_path / "backups"),
        "PREDEPLOY_PM2_APP": "web",
        "PREDEPLOY_PM2_BIN": str(pm2_app.pm2_bin),
        "PREDEPLOY_HEALTHCHECK_URL": f"{pm2_app.url}/health",
        "PREDEPLOY_NOTIFY_URLS": receiver.url(),
        **pm2_app.environ,
    }
    done = cli("deploy", "--env", "prod", "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (payload,) = receiver.payloads()
    assert [a["name"] for a in payload["event"]["applied"]] == ["1_users", "2_retire"]
    runbook = report["runbook"]
    assert runbook[:2] == [
        "# before the reload, this deploy applied 1 pre-deploy migration(s): 1_users",
        "# after the reload, it applied 1 post-deploy migration(s): 2_retire",
    ]
    rollbacks = [line.split()[-2] for line in runbook if " rollback " in line]
    assert rollbacks == ["2_retire", "1_users"]
    assert (
        report["runbook_path"] and Path(report["runbook_path"]).read_text().splitlines() == runbook
    )
    message = payload["message"]
    assert "\n".join(f"  {line}" for line in runbook) in message
