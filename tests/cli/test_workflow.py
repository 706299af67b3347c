"""`predeploy migrate` as operators run it: gates, prompts, failures, runbook, rollback, audit."""

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

from support.cli import Cli
from support.hazards import query_value
from support.project import schema_dump, write_migrations
from support.terminal import run_in_terminal

SCRIPTS = {
    "1_users": ("CREATE TABLE users (id int PRIMARY KEY);", "DROP TABLE users;"),
    "2_posts": ("CREATE TABLE posts (id int, user_id int REFERENCES users);", "DROP TABLE posts;"),
}


def schema(url: str) -> str:
    dump = schema_dump(url, "_prisma_migrations", "predeploy_runs*")
    return "\n".join(line for line in dump.splitlines() if not line.startswith(("--", "\\")))


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {t for (t,) in rows} - {"_prisma_migrations", "predeploy_runs"}


def runs(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT command, env, outcome, operator, backup_path, jsonb_array_length(migrations)"
            " FROM predeploy_runs ORDER BY id"
        ).fetchall()


@pytest.fixture
def prod_env(database_url: str, migrations_dir: Path, tmp_path: Path) -> dict[str, str]:
    for name, (up, down) in SCRIPTS.items():
        write_migrations(migrations_dir, {name: up})
        (migrations_dir / name / "down.sql").write_text(down + "\n")
    return {
        "DATABASE_URL": database_url,
        "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir),
        "PREDEPLOY_BACKUP_DIR": str(tmp_path / "backups"),
    }


@pytest.mark.parametrize(("typed", "expected"), [("right", 0), ("wrong", 8)])
def test_prod_asks_for_the_database_name_on_a_terminal(
    project: Path, prod_env: dict[str, str], database_url: str, typed: str, expected: int
) -> None:
    """prod on a real terminal: the right name applies; a wrong one is exit 8, nothing applied."""
    name = database_url.rsplit("/", 1)[1]
    code, screen = run_in_terminal(
        [sys.executable, "-m", "predeploy", "migrate", "--env", "prod"],
        cwd=project,
        env={**os.environ, **prod_env},
        answer=name if typed == "right" else "nope",
        prompt=b"to go on:",
    )
    assert code == expected, screen
    assert "About to apply 2 migration(s)" in screen
    outcome = "applied" if typed == "right" else "refused: confirmation (declined)"
    assert [row[2] for row in runs(database_url)] == [outcome]
    assert tables(database_url) == ({"users", "posts"} if typed == "right" else set())
    assert "✓ backup" in screen  # the backup comes before the question
    if typed == "right":
        assert "predeploy rollback --env prod --migrations 2_posts,1_users --yes" in screen
        assert (
            f"predeploy restore --env prod --backup {prod_env['PREDEPLOY_BACKUP_DIR']}/prod/"
            in screen
        )


def test_no_terminal_and_no_yes_is_refused_before_anything(
    cli: Cli, prod_env: dict[str, str], database_url: str
) -> None:
    """No terminal, no --yes: exit 8, no backup, nothing applied; in prod before lint, the
    drift check and its shadow database (cron waited for them to learn it could not ask)."""
    done = cli("migrate", "--env", "staging", env=prod_env)
    assert done.returncode == 8
    assert "no terminal to ask on" in done.stderr
    prod = cli("migrate", "--env", "prod", "--json", env=prod_env)
    assert prod.returncode == 8, prod.stderr
    steps = [s["name"] for s in json.loads(prod.stdout)["steps"]]
    assert steps == ["connectivity", "policy", "history", "pending"], steps
    outcomes = "SELECT array_agg(outcome ORDER BY started_at) FROM predeploy_runs"
    assert query_value(database_url, outcomes) == ["refused: confirmation (no terminal)"] * 2
    assert tables(database_url) == set()
    assert not Path(prod_env["PREDEPLOY_BACKUP_DIR"]).exists()


def test_failure_mid_run_prints_a_runbook_that_brings_the_database_back(
    cli: Cli, project: Path, prod_env: dict[str, str], database_url: str, migrations_dir: Path
) -> None:
    """A broken migration mid-run: exit 5, earlier kept, runbook's restore undoes the run."""
    before = schema(database_url)
    write_migrations(migrations_dir, {"3_broken": "ALTER TABLE nope ADD COLUMN x int;"})
    done = cli("migrate", "--env", "staging", "--yes", "--json", env=prod_env)
    assert done.returncode == 5, done.stderr
    assert "migration 3_broken failed" in done.stderr
    report = json.loads(done.stdout)
    assert [a["name"] for a in report["applied"]] == ["1_users", "2_posts"]
    assert tables(database_url) == {"users", "posts"}
    restore = next(line for line in report["runbook"] if line.startswith("predeploy restore"))
    assert report["backup"]["path"] in restore
    assert (
        "predeploy rollback --env staging --migrations 2_posts,1_users --yes" in report["runbook"]
    )
    pasted = subprocess.run(
        [sys.executable, "-m", *shlex.split(restore)],
        cwd=project,
        env={**os.environ, **prod_env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert pasted.returncode == 0, pasted.stderr
    assert schema(database_url) == before
    # the audit trail survives the restore: the failed run, then the restore
    assert [r[:3] for r in runs(database_url)] == [
        ("migrate", "staging", "failed: apply"),
        ("restore", "staging", "restored"),
    ]


def test_dry_run_and_rehearse_change_nothing(
    cli: Cli, prod_env: dict[str, str], database_url: str, migrations_dir: Path
) -> None:
    """--dry-run prints the SQL; --rehearse times each migration; the schema is untouched."""
    write_migrations(migrations_dir, {"3_broken": "ALTER TABLE nope ADD COLUMN x int;"})
    before = schema(database_url)
    dry = cli("migrate", "--env", "prod", "--dry-run", "--json", env=prod_env)
    assert dry.returncode == 0, dry.stderr
    assert [p["name"] for p in json.loads(dry.stdout)["pending"]] == [
        "1_users",
        "2_posts",
        "3_broken",
    ]
    rehearsal = cli("migrate", "--env", "prod", "--rehearse", "--yes", "--json", env=prod_env)
    assert rehearsal.returncode == 5, rehearsal.stderr  # a rehearsed migration failed
    results = json.loads(rehearsal.stdout)["rehearsal"]
    assert [(r["name"], r["outcome"]) for r in results] == [
        ("1_users", "ok"),
        ("2_posts", "ok"),
        ("3_broken", "failed"),
    ]
    assert schema(database_url) == before
    assert not Path(prod_env["PREDEPLOY_BACKUP_DIR"]).exists()


def test_rollback_by_down_sql_restores_the_previous_schema(
    cli: Cli, prod_env: dict[str, str], database_url: str
) -> None:
    """rollback --steps 2 runs both down.sql files and leaves both migrations pending."""
    before = schema(database_url)
    assert cli("migrate", "--env", "staging", "--yes", env=prod_env).returncode == 0
    assert schema(database_url) != before
    undone = cli("rollback", "--env", "staging", "--steps", "2", "--yes", env=prod_env)
    assert undone.returncode == 0, undone.stderr
    assert "rolled back 2_posts" in undone.stdout
    assert schema(database_url) == before
    status = json.loads(cli("status", "--env", "staging", "--json", env=prod_env).stdout)
    assert status["counts"]["pending"] == 2
    assert [r[0] for r in runs(database_url)] == ["migrate", "rollback"]


def test_rollback_refuses_without_down_sql(
    cli: Cli, prod_env: dict[str, str], migrations_dir: Path, database_url: str
) -> None:
    """A migration without down.sql: rollback names it and undoes nothing."""
    (migrations_dir / "2_posts" / "down.sql").unlink()
    assert cli("migrate", "--env", "staging", "--yes", env=prod_env).returncode == 0
    refused = cli("rollback", "--env", "staging", "--steps", "2", "--yes", env=prod_env)
    assert refused.returncode == 5
    assert "no down.sql (or only comments) for 2_posts" in refused.stderr
    assert tables(database_url) == {"users", "posts"}


def test_audit_rows_and_nothing_pending(
    cli: Cli, prod_env: dict[str, str], database_url: str
) -> None:
    """Each run leaves an audit row; with nothing pending there is no backup and no prompt."""
    first = cli("migrate", "--env", "prod", "--yes", env=prod_env)
    assert first.returncode == 0, first.stderr
    backups_made = list((Path(prod_env["PREDEPLOY_BACKUP_DIR"]) / "prod").glob("*.dump"))
    again = cli("migrate", "--env", "prod", env=prod_env)  # no --yes, no terminal: fine
    assert again.returncode == 0, again.stderr
    assert list((Path(prod_env["PREDEPLOY_BACKUP_DIR"]) / "prod").glob("*.dump")) == backups_made
    rows = runs(database_url)
    assert [(r[0], r[1], r[2], r[5]) for r in rows] == [
        ("migrate", "prod", "applied", 2),
        ("migrate", "prod", "nothing pending", 0),
    ]
    assert rows[0][4] == str(backups_made[0])
    assert rows[0][3]  # the operator


def test_held_lock_is_exit_6_before_any_backup(
    cli: Cli, prod_env: dict[str, str], database_url: str
) -> None:
    """Another run holds the migrate lock: exit 6 naming it, and no backup was made."""
    with psycopg.connect(database_url, autocommit=True, application_name="other-deploy") as other:
        other.execute("SELECT pg_advisory_lock(72707369)")
        done = cli(
            "migrate", "--env", "staging", "--yes", env={**prod_env, "PREDEPLOY_LOCK_WAIT": "1s"}
        )
    assert done.returncode == 6, done.stderr
    assert "application other-deploy" in done.stderr
    assert not Path(prod_env["PREDEPLOY_BACKUP_DIR"]).exists()
    assert tables(database_url) == set()


def test_no_backup_is_refused_in_prod(
    cli: Cli, prod_env: dict[str, str], database_url: str
) -> None:
    """--no-backup in prod needs PREDEPLOY_ALLOW_NO_BACKUP=1."""
    refused = cli("migrate", "--env", "prod", "--yes", "--no-backup", env=prod_env)
    assert refused.returncode == 2
    assert "PREDEPLOY_ALLOW_NO_BACKUP=1" in refused.stderr
    assert tables(database_url) == set()
    allowed = cli(
        "migrate",
        "--env",
        "prod",
        "--yes",
        "--no-backup",
        env={**prod_env, "PREDEPLOY_ALLOW_NO_BACKUP": "1"},
    )
    assert allowed.returncode == 0, allowed.stderr


def test_run_migrations_script_passes_arguments_and_exit_codes(
    project: Path, prod_env: dict[str, str], database_url: str
) -> None:
    """scripts/run-migrations.sh ENV runs migrate from the root with the venv, args through."""
    scripts = project / "scripts"
    scripts.mkdir()
    shutil.copy2(
        Path(__file__).parents[2] / "src" / "predeploy" / "examples" / "run-migrations.sh", scripts
    )
    script = scripts / "run-migrations.sh"
    env = {**os.environ, **prod_env, "PREDEPLOY_VENV": sys.prefix}
    elsewhere = project.parent
    dry = subprocess.run(
        [str(script), "staging", "--dry-run", "--json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert dry.returncode == 0, dry.stderr
    assert len(json.loads(dry.stdout)["pending"]) == 2
    refused = subprocess.run(
        [str(script), "staging"],
        cwd=elsewhere,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 8
    usage = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "run-migrations.sh ENV" in usage.stderr
    assert tables(database_url) == set()
