"""The small things operators trip over, each against real PostgreSQL or HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from support.cli import Cli
from support.project import write_migrations


def _env(database_url: str, migrations_dir: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir),
        "PREDEPLOY_BACKUP_DIR": str(tmp_path / "backups"),
        "PREDEPLOY_LOG_DIR": str(tmp_path / "logs"),
    }


def test_new_then_migrate_refuses_the_empty_template(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """predeploy new's template has no statements: migrate refuses it in every env, nothing
    applied, and once the SQL is written it applies (not burnt by the refusal)."""
    env = _env(database_url, migrations_dir, tmp_path)
    made = cli("new", "add_things", env=env)
    folder = Path(made.stdout.splitlines()[0])
    for name in ("dev", "staging"):
        refused = cli("migrate", "--env", name, "--yes", env=env)
        assert refused.returncode == 5, refused.stderr
        assert "has no SQL statements: write the migration or remove the folder" in refused.stderr
    (folder / "migration.sql").write_text("CREATE TABLE things (id int);\n")
    done = cli("migrate", "--env", "staging", "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["pending"][0]["has_down"] is False  # the comment-only down.sql is none
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('things')").fetchone() != (None,)


def test_reports_carry_no_sql_and_dry_runs_scrub_secrets(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """A migration holding PASSWORD 'x': the --json report of migrate has no SQL; a dry run
    shows the SQL with the connection's own password replaced."""
    password = database_url.split(":")[2].split("@", maxsplit=1)[0]
    write_migrations(
        migrations_dir,
        {"1_role": f"CREATE ROLE reporting LOGIN PASSWORD 'x-{password}-x';\nDROP ROLE reporting;"},
    )
    env = _env(database_url, migrations_dir, tmp_path)
    done = cli("migrate", "--env", "staging", "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert "PASSWORD" not in done.stdout and password not in done.stdout
    assert "sql" not in json.loads(done.stdout)["pending"][0]
    write_migrations(migrations_dir, {"2_again": f"SELECT 'x-{password}-x';"})
    dry = cli("migrate", "--env", "staging", "--dry-run", "--json", env=env)
    (pending,) = json.loads(dry.stdout)["pending"]
    assert pending["sql"] == "SELECT 'x-***-x';"
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert password not in logs


def test_a_dangling_symlink_in_the_migrations_folder_is_named(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """A migration folder that is a symlink to nowhere: exit 2 naming it, nothing applied."""
    write_migrations(migrations_dir, {"1_a": "CREATE TABLE a (id int);"})
    (migrations_dir / "2_b").symlink_to(tmp_path / "gone")
    done = cli(
        "migrate", "--env", "staging", "--yes", env=_env(database_url, migrations_dir, tmp_path)
    )
    assert done.returncode == 2
    assert "dangling symlink(s)" in done.stderr and "2_b" in done.stderr


def test_a_failed_concurrent_index_keeps_detail_and_says_how_to_clean_up(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """CREATE UNIQUE INDEX CONCURRENTLY on duplicates: PostgreSQL's DETAIL is kept, the
    INVALID index it leaves is named with the DROP INDEX CONCURRENTLY that removes it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE dup (v int); INSERT INTO dup VALUES (1), (1)")
    write_migrations(
        migrations_dir, {"1_unique": "CREATE UNIQUE INDEX CONCURRENTLY dup_v ON dup (v);"}
    )
    done = cli(
        "migrate", "--env", "staging", "--yes", env=_env(database_url, migrations_dir, tmp_path)
    )
    assert done.returncode == 5
    line = done.stderr.strip().splitlines()[-1]
    assert "DETAIL: Key (v)=(1) is duplicated." in line
    assert 'DROP INDEX CONCURRENTLY "public"."dup_v"' in line
    assert ";;" not in line
    with psycopg.connect(database_url, autocommit=True) as conn:  # advice taken; a valid one
        conn.execute("DROP INDEX dup_v; DELETE FROM dup; CREATE UNIQUE INDEX dup_v ON dup (v)")
    resolved = cli("resolve", "--env", "staging", "--rolled-back", "1_unique",
                   env=_env(database_url, migrations_dir, tmp_path))  # fmt: skip
    assert resolved.returncode == 0, resolved.stderr
    again = cli(
        "migrate", "--env", "staging", "--yes", env=_env(database_url, migrations_dir, tmp_path)
    )
    line = again.stderr.strip().splitlines()[-1]
    assert again.returncode == 5 and "[42P07]" in line, again.stderr
    assert "DROP INDEX" not in line and "was not built by this run" in line  # it is valid


def test_the_audit_row_says_how_the_run_ended(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """A failed run's audit row names the failed step and carries the error line."""
    write_migrations(migrations_dir, {"1_bad": "CREATE TABLE (;"})
    env = _env(database_url, migrations_dir, tmp_path)
    assert cli("migrate", "--env", "staging", "--yes", env=env).returncode == 5
    with psycopg.connect(database_url) as conn:
        outcome, detail = conn.execute("SELECT outcome, detail FROM predeploy_runs").fetchone()
    assert outcome == "failed: apply"
    assert "migration 1_bad failed at line 1" in detail


def test_json_log_lines_carry_env_and_run_id_even_from_threads(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """Every event of a backup run's log file (progress reports included) has env and run id."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE big AS SELECT g, md5(g::text) m FROM generate_series(1, 300000) g"
        )
    env = _env(database_url, migrations_dir, tmp_path)
    assert cli("backup", "--env", "staging", env=env).returncode == 0
    (log_file,) = (tmp_path / "logs").glob("predeploy-staging-*.log")
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert events and all(e.get("env") == "staging" and e.get("run_id") for e in events)
