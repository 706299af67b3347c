"""Failures end with one line and their documented exit code, never a traceback.

A role without CREATE on the schema (refused before any backup), a role that cannot read
the history, a standby, a migration.sql that is not UTF-8, a bad --steps, and two backups
started at the same moment.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from predeploy.config.settings import load_settings
from support import migrating
from support.cli import Cli
from support.hazards import (
    Background,
    at_once,
    one_line,
    project_env,
    query_value,
    timed,
    wait_until,
)
from support.pg15 import require_pg15
from support.project import write_migrations


def with_user(url: str, user: str, password: str) -> str:
    """``url`` with another user and password."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    return f"postgresql://{user}:{password}@{info['host']}:{info['port']}/{info['dbname']}"


@pytest.fixture
def limited(database_url: str) -> Iterator[str]:
    """A login role that may connect to the test database and nothing more; its URL."""
    name, password = f"limited_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(conn.info.dbname), sql.Identifier(name)
            )
        )
        # PostgreSQL 15+: PUBLIC has no CREATE on public; say so for older servers too
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    try:
        yield with_user(database_url, name, password)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def dumps_in(project: Path) -> list[str]:
    folder = project / "backups"
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_role_without_create_is_refused_before_any_backup(
    cli: Cli, limited: str, project: Path
) -> None:
    """No CREATE on the schema for the history table: exit 2 naming the GRANT; no dump."""
    write_migrations(project / "migrations", {"1_a": "CREATE TABLE a (id int);"})
    done, _ = timed(cli, "migrate", "--env", "staging", "--yes", env=project_env(limited, project))
    line = one_line(done)
    assert done.returncode == 2, done.stderr
    assert "GRANT CREATE ON SCHEMA" in line and "no backup taken" in line, line
    assert dumps_in(project) == []


def test_role_that_cannot_read_the_history(
    cli: Cli, limited: str, database_url: str, project: Path
) -> None:
    """SELECT on the history table missing: status, rollback and resolve exit 2 (a missing
    GRANT is configuration) naming the GRANT that fixes it, health exits 7 (its history
    check failed), migrate exits 2 before any backup."""
    migrations = project / "migrations"
    write_migrations(migrations, {"1_a": "CREATE TABLE a (id int);"})
    (migrations / "1_a" / "down.sql").write_text("DROP TABLE a;\n")
    migrating.migrate(load_settings("staging", project, project_env(database_url, project)))
    write_migrations(migrations, {"2_b": "CREATE TABLE b (id int);"})
    env = project_env(limited, project)
    cases = [
        (("status", "--env", "staging"), 2),
        (("rollback", "--env", "staging", "--steps", "1", "--yes"), 2),
        (("resolve", "--env", "staging", "--applied", "2_b"), 2),
        (("health", "--env", "staging"), 7),
        (("migrate", "--env", "staging", "--yes"), 2),  # its history step reads first
    ]
    for args, code in cases:
        done, seconds = timed(cli, *args, env=env)
        line = one_line(done)
        assert done.returncode == code, (args, done.stderr)
        assert "GRANT SELECT" in line and "_prisma_migrations" in line, (args, line)
        assert seconds < 9
    assert dumps_in(project) == []


def test_non_utf8_migration_is_named(cli: Cli, database_url: str, project: Path) -> None:
    """A Latin-1 migration.sql: migrate and lint exit 2 naming the file and the byte."""
    write_migrations(
        project / "migrations", {"1_latin": "INSERT INTO t VALUES ('caf\xe9');".encode("latin-1")}
    )
    env = project_env(database_url, project)
    runs = [("migrate", "--env", "staging", "--yes"), ("lint", "--env", "staging")]
    for args, (done, _) in zip(runs, at_once(cli, runs, env=env), strict=True):
        line = one_line(done)
        assert done.returncode == 2, (args, done.stderr)
        assert "1_latin/migration.sql is not UTF-8" in line and "0xe9" in line, line
    assert dumps_in(project) == []


@pytest.mark.parametrize("steps", ["abc", "0", "-1", "1.5"])
def test_rollback_steps_must_be_a_whole_number(
    cli: Cli, database_url: str, project: Path, steps: str
) -> None:
    """rollback --steps abc (or 0, -1, 1.5): exit 2, one line, before any connection."""
    (project / "migrations").mkdir()
    done, _ = timed(
        cli,
        "rollback",
        "--env",
        "staging",
        f"--steps={steps}",
        "--yes",
        env=project_env(database_url, project),
    )
    line = one_line(done)
    assert done.returncode == 2, done.stderr
    assert "--steps" in line, line


def test_two_backups_started_at_once_both_succeed(database_url: str, project: Path) -> None:
    """Two `predeploy backup` at the same moment: one waits for the other, both are kept
    under their own names, nothing partial is left."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g"
        )
    env = project_env(database_url, project, PREDEPLOY_LOCK_WAIT="30s")
    runs = [Background(project, "backup", "--env", "staging", "--json", env=env) for _ in range(2)]
    results = [run.finish(60) for run in runs]
    for done in results:
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    paths = {json.loads(done.stdout)["path"] for done in results}
    assert len(paths) == 2
    assert all(Path(p).is_file() for p in paths)
    assert not [p for p in (project / "backups").rglob("*.partial")]


# --- a standby (the `standby` fixture: support/standby.py) ---------------------------


def test_standby_is_refused_with_one_line(
    cli: Cli, standby: tuple[str, str], project: Path
) -> None:
    """Pointed at a standby, resolve and migrate exit 3 saying to use the primary."""
    primary_url, standby_url = standby
    migrations = project / "migrations"
    write_migrations(migrations, {"1_a": "CREATE TABLE IF NOT EXISTS a (id int);"})
    migrating.migrate(load_settings("staging", project, project_env(primary_url, project)))
    write_migrations(migrations, {"2_b": "CREATE TABLE b (id int);"})
    with psycopg.connect(standby_url) as conn:  # the standby replays up to the migration
        conn.execute("SELECT 1")
    env = project_env(standby_url, project)
    for args in (
        ("resolve", "--env", "staging", "--applied", "2_b"),
        ("resolve", "--env", "staging", "--rolled-back", "1_a"),
        ("migrate", "--env", "staging", "--yes", "--no-backup"),
    ):
        done, _ = timed(cli, *args, env=env)
        line = one_line(done)
        assert done.returncode == 3, (args, done.stderr)
        assert "standby" in line and "primary" in line, line


def test_folder_name_that_is_not_utf8_is_named(cli: Cli, database_url: str, project: Path) -> None:
    """A migration folder whose name is not UTF-8 (it could never be a history row): status,
    lint and migrate exit 2 naming it, before anything runs."""
    migrations = project / "migrations"
    folder = os.fsencode(migrations) + b"/1_caf\xe9"
    os.makedirs(folder)
    Path(os.fsdecode(folder + b"/migration.sql")).write_text("CREATE TABLE a (id int);")
    env = project_env(database_url, project)
    runs = [
        ("status", "--env", "staging"),
        ("lint", "--env", "staging"),
        ("migrate", "--env", "staging", "--yes"),
    ]
    for args, (done, _) in zip(runs, at_once(cli, runs, env=env), strict=True):
        line = one_line(done)
        assert done.returncode == 2, (args, done.stderr)
        assert "1_caf" in line and "not UTF-8" in line, line
    assert dumps_in(project) == []


def _terminate_when(url: str, query: str, *, victims: str) -> threading.Thread:
    """A thread that waits until ``query`` finds a session, then terminates ``victims``
    (a WHERE clause on pg_stat_activity)."""

    def watch() -> None:
        wait_until(lambda: query_value(url, query), what=query)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE " + victims)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_connection_lost_mid_apply_is_one_line_with_audit_and_runbook(
    cli: Cli, database_url: str, project: Path
) -> None:
    """The migration session terminated while a migration runs: exit 5 with one line that
    says the connection was lost (not that the SQL is wrong), an audit row and a runbook."""
    write_migrations(
        project / "migrations", {"1_slow": "CREATE TABLE a (id int);\nSELECT pg_sleep(30);\n"}
    )
    watcher = _terminate_when(
        database_url,
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
        " AND query LIKE 'SELECT pg_sleep(30)%%'",
        victims="query LIKE 'SELECT pg_sleep(30)%%' AND pid <> pg_backend_pid()",
    )
    done, seconds = timed(
        cli,
        "migrate",
        "--env",
        "staging",
        "--yes",
        "--no-backup",
        env=project_env(database_url, project),
    )
    watcher.join(10)
    line = one_line(done)
    assert done.returncode == 5, done.stderr
    assert "connection" in line and "fix the SQL" not in line, line
    assert seconds < 9
    assert query_value(database_url, "SELECT to_regclass('a')") is None
    assert query_value(database_url, "SELECT outcome FROM predeploy_runs") == "failed: apply"
    assert list((project / "logs").glob("runbook-staging-*.txt"))


def test_backup_session_lost_mid_dump_is_a_backup_failure(
    cli: Cli, database_url: str, project: Path
) -> None:
    """Every session of a backup terminated while pg_dump streams: exit 4 with one line
    (not the unlock's connection error), no partial left."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE items AS SELECT g AS id, md5(random()::text) || md5(random()::text)"
            " AS body FROM generate_series(1, 200000) g"
        )
    watcher = _terminate_when(
        database_url,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY %%' AND state = 'active'",
        victims="application_name LIKE 'predeploy%%'",
    )
    done, _ = timed(cli, "backup", "--env", "staging", env=project_env(database_url, project))
    watcher.join(10)
    line = one_line(done)
    assert done.returncode == 4, done.stderr
    assert "backup failed" in line, line
    assert dumps_in(project) == []


def test_multi_line_error_from_the_server_is_one_line(
    cli: Cli, database_url: str, project: Path
) -> None:
    """A migration that raises a message of several lines: exit 5, one line holding all of it."""
    write_migrations(
        project / "migrations",
        {"1_raise": "DO $$ BEGIN RAISE EXCEPTION E'first line\\nsecond line'; END $$;\n"},
    )
    done, _ = timed(
        cli, "migrate", "--env", "staging", "--yes", "--no-backup",
        env=project_env(database_url, project),
    )  # fmt: skip
    line = one_line(done)
    assert done.returncode == 5, done.stderr
    assert "first line second line" in line and "1_raise" in line, line


def test_client_programs_with_an_older_libpq_can_use_the_conninfo(database_url: str) -> None:
    """The conninfo handed to pg_dump/pg_restore/psql holds only options their libpq knows:
    PostgreSQL 15's psql connects with it (libpq 16+ reports sslcertmode for every
    connection; pg_dump 15 refused it, so every backup of a PostgreSQL 15 server failed)."""
    from predeploy.programs import pgclient  # noqa: PLC0415

    psql15 = require_pg15() / "psql"
    with psycopg.connect(database_url) as conn:
        params, password = conn.info.get_parameters(), conn.info.password
    with pgclient.client(params, password, "predeploy test") as client:
        done = subprocess.run(
            [str(psql15), "-X", "-At", "-c", "SELECT 42", client.conninfo],
            env=client.env,
            pass_fds=client.pass_fds,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"
