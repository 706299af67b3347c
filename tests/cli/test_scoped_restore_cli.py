"""`predeploy backup|backups|restore --target NAME` of a schema-per-tenant fleet, as a user
runs them: acme's backup holds acme alone, its restore brings acme back and leaves beta,
and acme's backup is refused on beta (exit 2, one line)."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from support.cli import Cli
from support.hazards import one_line
from support.project import write_migrations

FLEET = """\
[fleet]
concurrency = 2

[[targets]]
name = "acme"
schema = "acme"

[[targets]]
name = "beta"
schema = "beta"
"""


def _rows(url: str, schema: str) -> list[str]:
    with psycopg.connect(url) as conn:
        query = f"SELECT name FROM {schema}.items ORDER BY name"
        return [str(name) for (name,) in conn.execute(query)]


def _tables(url: str, schema: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,)
        )
        return [str(name) for (name,) in rows]


@pytest.fixture
def fleet_env(project: Path, database_url: str, cli: Cli) -> dict[str, str]:
    """A project whose fleet is tenants acme and beta (schemas of the test's database),
    each migrated by `predeploy migrate --target NAME`, with a row each."""
    migrations = project / "migrations"
    write_migrations(migrations, {"1_items": "CREATE TABLE items (name text PRIMARY KEY);"})
    (project / "predeploy.fleet.toml").write_text(FLEET)
    env = {
        "DATABASE_URL": database_url,
        "PREDEPLOY_MIGRATIONS_DIR": str(migrations),
        "PREDEPLOY_BACKUP_DIR": str(project / "backups"),
        "PREDEPLOY_LOG_DIR": str(project / "logs"),
    }
    for name in ("acme", "beta"):
        done = cli("migrate", "--env", "staging", "--target", name, "--yes", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO acme.items VALUES ('a1')")
        conn.execute("INSERT INTO beta.items VALUES ('b1')")
    return env


def test_backup_and_restore_one_tenant(
    cli: Cli, fleet_env: dict[str, str], database_url: str, project: Path
) -> None:
    """Back up acme, change both tenants, restore acme with the pasted command: acme is as
    it was, beta keeps its changes; beta refuses acme's backup."""
    done = cli("backup", "--env", "staging", "--target", "acme", "--json", env=fleet_env)
    assert done.returncode == 0, done.stdout + done.stderr
    made = Path(json.loads(done.stdout)["path"])
    assert made.parent == project / "backups" / "staging" / "targets" / "acme"
    manifest = json.loads(made.with_name(made.name + ".json").read_text())
    assert manifest["schema"] == "acme"
    pasted = manifest["restore_command"].split()
    assert pasted[1:6] == ["restore", "--env", "staging", "--target", "acme"]

    listed = cli("backups", "--env", "staging", "--target", "acme", "--json", env=fleet_env)
    assert listed.returncode == 0, listed.stderr
    acme_backups = json.loads(listed.stdout)["backups"]
    assert acme_backups[0]["path"] == str(made)  # newest first; its migrate's is older
    assert {b["schema"] for b in acme_backups} == {"acme"}
    beta_listed = cli("backups", "--env", "staging", "--target", "beta", "--json", env=fleet_env)
    beta_backups = json.loads(beta_listed.stdout)["backups"]
    assert beta_backups and {b["schema"] for b in beta_backups} == {"beta"}

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO acme.items VALUES ('a2')")
        conn.execute("CREATE TABLE acme.later (id int)")
        conn.execute("INSERT INTO beta.items VALUES ('b2')")
        conn.execute("CREATE TABLE beta.later (id int)")

    refused = cli(*pasted[1:4], "--target", "beta", *pasted[6:], "--yes", env=fleet_env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "it holds schema acme, the target is schema beta" in one_line(refused)
    assert _rows(database_url, "beta") == ["b1", "b2"]

    restored = cli(*pasted[1:], "--yes", env=fleet_env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert _rows(database_url, "acme") == ["a1"]
    assert "later" not in _tables(database_url, "acme")
    assert _rows(database_url, "beta") == ["b1", "b2"]
    assert "later" in _tables(database_url, "beta")
    password = psycopg.conninfo.conninfo_to_dict(database_url).get("password")
    for out in (done, listed, refused, restored):
        assert not password or str(password) not in out.stdout + out.stderr
