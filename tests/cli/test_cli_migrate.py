"""The migration commands from the command line: output, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from support.cli import Cli
from support.project import write_migrations


def settings_env(database_url: str, migrations_dir: Path) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir)}


def test_status_check_then_migrate_then_clean(
    cli: Cli, database_url: str, migrations_dir: Path
) -> None:
    """status --check exits 1 with pending work, migrate applies it, then status --check is 0."""
    write_migrations(migrations_dir, {"1_a": "CREATE TABLE a (id int);"})
    env = settings_env(database_url, migrations_dir)
    pending = cli("status", "--env", "staging", "--check", "--json", env=env)
    assert pending.returncode == 1
    data = json.loads(pending.stdout)
    assert data["counts"]["pending"] == 1
    assert "1 pending" in pending.stderr
    done = cli("migrate", "--env", "staging", "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert [m["name"] for m in json.loads(done.stdout)["applied"]] == ["1_a"]
    clean = cli("status", "--env", "staging", "--check", "--json", env=env)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["up_to_date"] is True


def test_failed_migration_exits_5_with_one_line(
    cli: Cli, database_url: str, migrations_dir: Path
) -> None:
    """Broken SQL: exit 5, one line naming migration, SQLSTATE and line; no traceback."""
    write_migrations(migrations_dir, {"1_bad": "CREATE TABLE a (id int);\nCREAT TABLE b ();\n"})
    done = cli(
        "migrate", "--env", "staging", "--yes", env=settings_env(database_url, migrations_dir)
    )
    assert done.returncode == 5
    (message,) = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert message.startswith(
        "predeploy: migration 1_bad failed at line 2, column 1 of migration.sql [42601]"
    )
    assert "Traceback" not in done.stderr


def test_missing_migration_sql_exits_2_before_anything_runs(
    cli: Cli, database_url: str, migrations_dir: Path
) -> None:
    """A folder without migration.sql is named, and nothing is applied."""
    write_migrations(migrations_dir, {"1_a": "CREATE TABLE a (id int);"})
    (migrations_dir / "2_oops").mkdir()
    done = cli("migrate", "--env", "staging", env=settings_env(database_url, migrations_dir))
    assert done.returncode == 2
    assert "2_oops" in done.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('a')").fetchone() == (None,)


def test_resolve_and_new(cli: Cli, database_url: str, migrations_dir: Path) -> None:
    """resolve prints what it marked; new prints the folder it made and that the files hold
    no SQL yet; bad names exit 2."""
    env = settings_env(database_url, migrations_dir)
    made = cli("new", "add_things", env=env)
    assert made.returncode == 0, made.stderr
    first, note = made.stdout.strip().splitlines()
    folder = Path(first)
    assert "write the SQL before migrating" in note
    assert folder.parent == migrations_dir and folder.name.endswith("_add_things")
    assert cli("new", "Bad Name", env=env).returncode == 2
    resolved = cli("resolve", "--env", "staging", "--applied", folder.name, env=env)
    assert resolved.returncode == 0, resolved.stderr
    assert f"migration {folder.name} marked applied" in resolved.stdout
    again = cli("resolve", "--env", "staging", "--rolled-back", folder.name, env=env)
    assert again.returncode == 2
    assert "only a failed migration can be marked rolled back" in again.stderr
