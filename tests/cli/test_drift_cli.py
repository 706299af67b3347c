"""`predeploy drift` and where drift shows up: a protected migrate, status, maintenance."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from support.cli import Cli
from support.pg15 import PG15_BIN, client_programs_only
from support.pm2 import Pm2App
from support.project import write_migrations
from support.receivers import Receiver
from support.servers import Server

SCRIPTS = {"1_users": "CREATE TABLE users (id int PRIMARY KEY, email text);"}


def _env(database_url: str, migrations_dir: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir),
        "PREDEPLOY_BACKUP_DIR": str(tmp_path / "backups"),
    }


def test_drift_under_a_schema_compares_that_tenant_only(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """?schema=: the first protected migrate of a new tenant is no drift (its schema does not
    exist yet), another tenant's objects are not this one's drift (nor in --revert-sql), and a
    hand-made change in this tenant still is."""
    write_migrations(migrations_dir, SCRIPTS)
    base = _env(database_url, migrations_dir, tmp_path)
    for tenant in ("tenant1", "tenant2"):
        env = base | {"DATABASE_URL": f"{database_url}?schema={tenant}"}
        done = cli("migrate", "--env", "prod", "--yes", env=env)
        assert done.returncode == 0, done.stderr
    clean = cli("drift", "--env", "prod", "--revert-sql", "--json", env=env)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["drifted"] is False
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE tenant1.users ADD COLUMN nickname text")
        conn.execute("ALTER TABLE tenant2.users ADD COLUMN handle text")
    drifted = cli("drift", "--env", "prod", "--revert-sql", env=env)
    assert drifted.returncode == 1, drifted.stderr
    assert "handle" in drifted.stdout and "nickname" not in drifted.stdout, drifted.stdout
    assert "tenant1" not in drifted.stdout, drifted.stdout


def test_drift_names_a_hand_made_change_and_saved_fingerprints_agree(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """No drift after migrating; a hand-made column is named (exit 1), the same through a
    saved fingerprint (--expected, or PREDEPLOY_DRIFT_EXPECTED); --revert-sql says how to undo
    it; nothing is changed."""
    write_migrations(migrations_dir, SCRIPTS)
    env = _env(database_url, migrations_dir, tmp_path)
    assert cli("migrate", "--env", "staging", "--yes", env=env).returncode == 0
    saved = tmp_path / "expected.json"
    clean = cli("drift", "--env", "staging", "--save", str(saved), "--json", env=env)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["drifted"] is False
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE users ADD COLUMN nickname text")
    shadowed = cli("drift", "--env", "staging", "--revert-sql", "--json", env=env)
    filed = cli("drift", "--env", "staging", "--expected", str(saved), "--json", env=env)
    by_setting = env | {"PREDEPLOY_DRIFT_EXPECTED": str(saved)}
    configured = cli("drift", "--env", "staging", "--json", env=by_setting)
    assert json.loads(configured.stdout)["expected_from"] == str(saved)  # no shadow built
    for done in (shadowed, filed, configured):
        assert done.returncode == 1, done.stderr
        assert "difference(s) between" in done.stderr.splitlines()[-1]
        found = json.loads(done.stdout)["differences"]
        assert [(d["kind"], d["name"], d["change"]) for d in found] == [
            ("column", "public.users.nickname", "added by hand")
        ]
    assert any("DROP COLUMN nickname" in s["sql"] for s in json.loads(shadowed.stdout)["revert"])
    with psycopg.connect(database_url) as conn:  # drift never changes anything
        assert conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'nickname'"
        ).fetchone() == (1,)


def test_protected_migrate_refuses_drift_with_yes_unless_allowed(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """prod --yes with drift: exit 1 before the backup; --allow-drift applies; status --drift
    --check reports it."""
    write_migrations(migrations_dir, SCRIPTS)
    env = _env(database_url, migrations_dir, tmp_path)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE hand_made (id int)")
    refused = cli("migrate", "--env", "prod", "--yes", env=env)
    assert refused.returncode == 1, refused.stderr
    assert "(drift)" in refused.stderr and "--allow-drift" in refused.stderr
    assert not (tmp_path / "backups").exists()
    allowed = cli("migrate", "--env", "prod", "--yes", "--allow-drift", "--json", env=env)
    assert allowed.returncode == 0, allowed.stderr
    report = json.loads(allowed.stdout)
    assert [d["name"] for d in report["drift"]["differences"]] == ["public.hand_made"]
    status = cli("status", "--env", "prod", "--drift", "--check", env=env)
    assert status.returncode == 1
    assert "1 drifted" in status.stderr


def test_drift_that_cannot_be_checked_is_a_warning_not_a_failure(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """A missing saved fingerprint: prod migrate's drift step is skipped saying why (once:
    not again among the warnings), not ✓, and it applies."""
    write_migrations(migrations_dir, SCRIPTS)
    env = _env(database_url, migrations_dir, tmp_path) | {
        "PREDEPLOY_DRIFT_EXPECTED": str(tmp_path / "nowhere.json")
    }
    done = cli("migrate", "--env", "prod", "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert not any("drift" in w for w in report["warnings"])
    drift = next(s for s in report["steps"] if s["name"] == "drift")
    assert drift["outcome"] == "skipped" and drift["detail"].startswith("skipped: cannot read")


@pytest.fixture
def app_on_15(pg15_server: Server) -> Iterator[str]:
    """A PostgreSQL 15 database owned by a role without CREATEDB, as on a typical VPS: its URL."""
    name, password = f"app_{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    with psycopg.connect(pg15_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)))  # fmt: skip
        conn.execute(sql.SQL("CREATE DATABASE {0} OWNER {0}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(pg15_server.admin_url)
    try:
        yield f"postgresql://{name}:{password}@{info['host']}:{info['port']}/{name}"
    finally:
        with psycopg.connect(pg15_server.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _logged(stderr: str, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def test_without_createdb_on_postgresql_15_drift_builds_a_throwaway_15_cluster(
    cli: Cli, app_on_15: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """The app role cannot create databases and the embedded server is 18: `drift` and the
    nightly maintenance build the shadow in a throwaway PostgreSQL 15 cluster and name a
    hand-made column; maintenance's drift step lasts as long as the check really did."""
    write_migrations(migrations_dir, SCRIPTS)
    env = _env(app_on_15, migrations_dir, tmp_path)
    assert cli("migrate", "--env", "staging", "--yes", env=env).returncode == 0
    with psycopg.connect(app_on_15, autocommit=True) as conn:
        conn.execute("ALTER TABLE users ADD COLUMN nickname text")
    done = cli("drift", "--env", "prod", "--json", env=env)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    cluster = f"a shadow database on a throwaway PostgreSQL 15 cluster ({PG15_BIN})"
    assert report["expected_from"] == cluster
    assert [d["name"] for d in report["differences"]] == ["public.users.nickname"]
    nightly = cli("maintenance", "--env", "prod", "--json", env=env)
    assert nightly.returncode == 1, nightly.stderr  # drift needs a human
    step = next(s for s in json.loads(nightly.stdout)["steps"] if s["name"] == "drift")
    [built] = _logged(nightly.stderr, "shadow_built")
    assert step["outcome"] == "ok" and step["seconds"] >= built["seconds"] > 0
    [started] = _logged(nightly.stderr, "shadow_cluster_started")
    assert not Path(started["folder"]).exists()  # stopped and removed


REASON = "no shadow database for PostgreSQL 15: the live role cannot create databases (CREATEDB)"
SETTING = (
    "set PREDEPLOY_PG_BIN_DIR (to PostgreSQL 15's server programs) or "
    "PREDEPLOY_SHADOW_DATABASE_URL)"
)


def _drift_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[2:].startswith("drift ")]


def _drift_step(report: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in report["steps"] if s["name"] == "drift")


def test_no_shadow_anywhere_is_a_skipped_drift_step_said_once_in_every_report(
    cli: Cli,
    app_on_15: str,
    migrations_dir: Path,
    tmp_path: Path,
    receiver: Receiver,
    apprise_loaded: None,
) -> None:
    """No CREATEDB, a client-only PREDEPLOY_PG_BIN_DIR, no shadow URL, the embedded server
    18: prod migrate (checklist, --json), maintenance (checklist, --json) and its
    notification each show drift skipped, once, with why and what to set; never ✓ or ok."""
    write_migrations(migrations_dir, SCRIPTS)
    client = client_programs_only(tmp_path / "client")
    env = _env(app_on_15, migrations_dir, tmp_path) | {"PREDEPLOY_PG_BIN_DIR": str(client)}
    assert cli("migrate", "--env", "staging", "--yes", env=env).returncode == 0
    write_migrations(migrations_dir, {"2_posts": "CREATE TABLE posts (id bigint);"})
    dry = cli("migrate", "--env", "prod", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    step = _drift_step(json.loads(dry.stdout))
    assert step["outcome"] == "skipped" and step["detail"].startswith(f"skipped: {REASON}")
    assert step["detail"].endswith(SETTING[:-1]) and dry.stdout.count(REASON) == 1
    applied = cli("migrate", "--env", "prod", "--yes", env=env)
    assert applied.returncode == 0, applied.stderr
    [line] = _drift_lines(applied.stdout)
    assert line.startswith("- drift") and f"(skipped: {REASON}" in line and line.endswith(SETTING)
    assert (applied.stdout + applied.stderr).count(REASON) == 1
    notified = env | {"PREDEPLOY_NOTIFY_URLS": receiver.url(), "PREDEPLOY_NOTIFY_ON": "all"}
    nightly = cli("maintenance", "--env", "prod", "--json", env=notified)
    assert nightly.returncode == 0, nightly.stderr
    report = json.loads(nightly.stdout)
    step = _drift_step(report)
    assert step["outcome"] == "skipped" and step["detail"].startswith(f"skipped: {REASON}")
    assert report["drift"] is None and nightly.stdout.count(REASON) == 1
    [payload] = receiver.payloads()
    assert payload["event"]["drift_skipped"] == step["detail"]
    assert f"drift: skipped: {REASON}" in payload["message"]
    human = cli("maintenance", "--env", "prod", env=env)
    assert human.returncode == 0, human.stderr
    [line] = _drift_lines(human.stdout)
    assert line.startswith("- drift") and line.endswith(SETTING)
    assert (human.stdout + human.stderr).count(REASON) == 1


def _ended(pid: int) -> bool:
    """No such process, or a zombie (its command line is empty): it runs nothing."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() == b""
    except OSError:
        return True


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_drift_stops_and_removes_its_throwaway_cluster(
    cli: Cli,
    project: Path,
    app_on_15: str,
    migrations_dir: Path,
    tmp_path: Path,
    clean_environ: dict[str, str],
    signum: int,
    code: int,
) -> None:
    """SIGINT or SIGTERM while the shadow cluster runs: exit 130/143, its server stopped and
    its folder removed before the run ends."""
    write_migrations(migrations_dir, SCRIPTS)
    env = _env(app_on_15, migrations_dir, tmp_path)
    assert cli("migrate", "--env", "staging", "--yes", env=env).returncode == 0
    child = subprocess.Popen(
        [sys.executable, "-m", "predeploy", "drift", "--env", "prod"],
        cwd=project, env=clean_environ | env, stdin=subprocess.DEVNULL, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stderr is not None
        line = next(line for line in child.stderr if "shadow_cluster_started" in line)
        folder = Path(json.loads(line)["folder"])
        server = int((folder / "data" / "postmaster.pid").read_text().splitlines()[0])
        assert not _ended(server)
        child.send_signal(signum)
        rest = child.stderr.read()
        assert child.wait(timeout=60) == code, rest
        assert not folder.exists() and _ended(server)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)


@pytest.mark.slow
def test_a_deploy_says_a_skipped_drift_check_once(
    cli: Cli, app_on_15: str, pm2_app: Pm2App, tmp_path: Path
) -> None:
    """A deploy with pre- and post-deploy migrations, where no shadow can be built: the drift
    step is skipped (with why) once in the whole deploy, not once per phase."""
    write_migrations(
        pm2_app.project / "migrations",
        {
            "1_users": "CREATE TABLE users (id int);",
            "2_cleanup": "-- predeploy: post-deploy\nCREATE TABLE later (id int);",
        },
    )
    settings = {
        "DATABASE_URL": app_on_15,
        "PREDEPLOY_PM2_APP": "web",
        "PREDEPLOY_PM2_BIN": str(pm2_app.pm2_bin),
        "PREDEPLOY_HEALTHCHECK_URL": f"{pm2_app.url}/health",
        "PREDEPLOY_DEPLOY_WAIT": "20s",
        "PREDEPLOY_BACKUP_DIR": str(tmp_path / "backups"),
        "PREDEPLOY_PG_BIN_DIR": str(client_programs_only(tmp_path / "client")),
    }
    (pm2_app.project / ".env.prod").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    done = cli("deploy", "--env", "prod", "--yes", env=pm2_app.environ)
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).count(REASON) == 1, done.stdout
