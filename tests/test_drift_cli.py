"""`predeploy drift` and where drift shows up: a protected migrate, status, maintenance."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from conftest import Cli, write_migrations

SCRIPTS = {"1_users": "CREATE TABLE users (id int PRIMARY KEY, email text);"}


def _env(database_url: str, migrations_dir: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir),
        "PREDEPLOY_BACKUP_DIR": str(tmp_path / "backups"),
    }


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
    """A missing saved fingerprint: prod migrate warns that drift was not checked, its
    checklist says so (skipped, not ✓), and it applies."""
    write_migrations(migrations_dir, SCRIPTS)
    env = _env(database_url, migrations_dir, tmp_path) | {
        "PREDEPLOY_DRIFT_EXPECTED": str(tmp_path / "nowhere.json")
    }
    done = cli("migrate", "--env", "prod", "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert any(w.startswith("drift not checked: cannot read") for w in report["warnings"])
    drift = next(s for s in report["steps"] if s["name"] == "drift")
    assert drift["outcome"] == "skipped" and drift["detail"].startswith("not checked: cannot read")
