"""No command hangs behind a lock another session holds.

A session doing `BEGIN; LOCK TABLE users;` (then idle), or a reader plus a queued ALTER,
used to make migrate, lint, health, backup, rollback and rehearse wait forever. Each
case here must end within a stated bound, with one line naming the holder's pid and the
documented exit code, and no traceback.
"""

from __future__ import annotations

import json
import socket
import threading
import time
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
    holding,
    one_line,
    project_env,
    query_value,
    queued,
    timed,
    wait_until,
)
from support.project import write_migrations

# LOCK_WAIT (2 s) or BLOCKER_WAIT (1 s), plus the interpreter's start, plus slack: what
# these prove is that a wait ends (a hang would run to pytest's timeout), not how fast,
# and a two-core machine under a parallel load took 10 s where a quiet one takes 4
BOUND = 20.0


@pytest.fixture
def users(database_url: str, project: Path) -> dict[str, str]:
    """A database with `users` applied (1_users, with down.sql) and 2_nickname pending."""
    migrations = project / "migrations"
    write_migrations(
        migrations,
        {
            "1_users": "CREATE TABLE users (id int PRIMARY KEY, name text);\n"
            "INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 100) g;\n"
        },
    )
    (migrations / "1_users" / "down.sql").write_text("DROP TABLE users;\n")
    env = project_env(database_url, project)
    migrating.migrate(load_settings("staging", project, env))
    write_migrations(migrations, {"2_nickname": "ALTER TABLE users ADD COLUMN nickname text;\n"})
    (migrations / "2_nickname" / "down.sql").write_text("ALTER TABLE users DROP COLUMN nickname;\n")
    return env


def no_backup_left(project: Path) -> None:
    folder = project / "backups"
    left = [p.name for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    assert left == [], left


@pytest.mark.parametrize(
    ("args", "code", "extra"),
    [
        # pg_dump waits at most LOCK_WAIT for users (--lock-wait-timeout)
        (("migrate", "--env", "staging", "--yes"), 4, {}),
        # the blocker scan lists it; the apply's lock timeout and its one retry end it
        (("migrate", "--env", "staging", "--yes", "--no-backup"), 5, {}),
        (("backup", "--env", "staging"), 4, {}),
        # the down.sql of 1_users (DROP TABLE users) under the migration lock timeout
        (("rollback", "--env", "staging", "--steps", "1", "--yes"), 5, {}),
        # the rehearsal has no retries: its earlier changes still hold their locks
        (("migrate", "--env", "prod", "--rehearse", "--yes"), 5, {}),
    ],
    ids=["migrate", "migrate-no-backup", "backup", "rollback", "prod-rehearse"],
)
def test_access_exclusive_holder_ends_the_command_naming_its_pid(
    cli: Cli,
    users: dict[str, str],
    database_url: str,
    project: Path,
    args: tuple[str, ...],
    code: int,
    extra: dict[str, str],
) -> None:
    """Behind an idle `LOCK TABLE users`: the step's exit code within BOUND s, its pid named."""
    with holding(database_url, "LOCK TABLE users;") as pid:
        done, seconds = timed(cli, *args, env={**users, **extra})
    line = one_line(done)
    assert done.returncode == code, done.stderr
    assert seconds < BOUND, f"{args} took {seconds:.1f}s"
    assert f"pid {pid}" in line, line
    assert ";;" not in line, line  # the holder's own ';' is not doubled by our separator
    no_backup_left(project)


def test_lint_and_health_read_estimated_sizes_past_a_locked_table(
    cli: Cli, users: dict[str, str], database_url: str
) -> None:
    """lint and health never wait for a locked table's size: they end within BOUND s with
    pg_class's estimate (and say so); nothing about the lock makes them fail."""
    with holding(database_url, "LOCK TABLE users"):
        (linted, lint_seconds), (healthy, health_seconds) = at_once(
            cli,
            [("lint", "--env", "staging", "--json"), ("health", "--env", "staging", "--json")],
            env=users,
        )
    assert linted.returncode == 0, linted.stderr
    assert lint_seconds < BOUND
    assert "Traceback" not in linted.stderr
    # unhealthy only because 2_nickname is pending, not because of the lock
    assert healthy.returncode == 7, healthy.stderr
    checks = {c["name"]: c for c in json.loads(healthy.stdout)["checks"]}
    assert checks["database"]["ok"] and "1 pending" in checks["history"]["detail"]
    assert checks["tables"]["ok"], checks["tables"]
    assert "estimated" in checks["tables"]["detail"]
    assert health_seconds < BOUND
    assert "Traceback" not in healthy.stderr


def test_locked_history_table_ends_status_lint_and_health_naming_the_pid(
    cli: Cli, users: dict[str, str], database_url: str
) -> None:
    """With the history table locked: status and lint exit 3, health 7 (its history check
    failed), each within BOUND s and naming the holder's pid."""
    with holding(database_url, "LOCK TABLE _prisma_migrations") as pid:
        results = at_once(
            cli,
            [
                ("status", "--env", "staging"),
                ("lint", "--env", "staging"),
                ("health", "--env", "staging", "--json"),
            ],
            env=users,
        )
    healthy = results[2][0]
    for (done, seconds), code in zip(results, (3, 3, 7), strict=True):
        line = one_line(done)
        assert done.returncode == code, done.stderr
        assert seconds < BOUND
        assert f"pid {pid}" in line, line
    checks = {c["name"]: c for c in json.loads(healthy.stdout)["checks"]}
    assert not checks["history"]["ok"]
    assert f"pid {pid}" in checks["history"]["detail"]


def test_prod_reader_and_queued_alter_end_migrate_after_blocker_wait(
    cli: Cli, users: dict[str, str], database_url: str
) -> None:
    """In prod, a reader holding ACCESS SHARE and an ALTER queued behind it: migrate --yes
    waits BLOCKER_WAIT for them, then exits 5 naming the reader; with its backup, pg_dump
    (queued behind the ALTER too) gives up after LOCK_WAIT: exit 4, both pids named."""
    prod = {**users, "PREDEPLOY_ALLOW_NO_BACKUP": "1"}
    with (
        holding(database_url, "SELECT count(*) FROM users") as reader,
        queued(database_url, "ALTER TABLE users ADD COLUMN age int") as alter,
    ):
        no_backup, no_backup_seconds = timed(
            cli, "migrate", "--env", "prod", "--yes", "--no-backup", env=prod
        )
        backed, backed_seconds = timed(cli, "migrate", "--env", "prod", "--yes", env=prod)
    line = one_line(no_backup)
    assert no_backup.returncode == 5, no_backup.stderr
    assert 1.0 <= no_backup_seconds < BOUND
    assert f"pid {reader}" in line and "PREDEPLOY_BLOCKER_WAIT" in line, line
    line = one_line(backed)
    assert backed.returncode == 4, backed.stderr
    assert backed_seconds < BOUND
    assert f"pid {reader}" in line or f"pid {alter}" in line, line


def test_drift_behind_a_queued_alter_names_the_sessions_and_migrate_says_not_checked(
    cli: Cli, users: dict[str, str], database_url: str
) -> None:
    """A view on users, a reader and an ALTER queued behind it: reading the view's
    definition waits; `drift` ends with exit 3 naming the sessions, and prod migrate's
    checklist marks drift skipped ("skipped: ..."), not ✓."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE VIEW names AS SELECT name FROM users")
    prod = {**users, "PREDEPLOY_ALLOW_NO_BACKUP": "1"}
    with (
        holding(database_url, "SELECT count(*) FROM names") as reader,
        queued(database_url, "ALTER TABLE users ADD COLUMN age int") as alter,
    ):
        drift, seconds = timed(cli, "drift", "--env", "prod", env=prod)
        migrate, _ = timed(
            cli, "migrate", "--env", "prod", "--yes", "--no-backup", "--json", env=prod
        )
    line = one_line(drift)
    assert drift.returncode == 3, drift.stderr
    assert seconds < BOUND
    assert f"pid {alter}" in line and f"behind pid {reader}" in line, line
    step = next(s for s in json.loads(migrate.stdout)["steps"] if s["name"] == "drift")
    assert step["outcome"] == "skipped" and step["detail"].startswith("skipped: reading")


@pytest.mark.parametrize(
    "args",
    [
        ("rollback", "--env", "staging", "--steps", "1", "--yes"),
        ("migrate", "--env", "prod", "--rehearse", "--yes"),
    ],
    ids=["rollback", "prod-rehearse"],
)
def test_idle_reader_stalls_application_queries_at_most_a_lock_timeout(
    users: dict[str, str], database_url: str, project: Path, args: tuple[str, ...]
) -> None:
    """Behind an idle-in-transaction reader, rollback and rehearse queue their ACCESS
    EXCLUSIVE request for LOCK_TIMEOUT (200 ms) at a time, never indefinitely: the
    application's reads of the table keep being answered, and the command exits 5 naming
    the reader."""
    stalls: list[float] = []
    running = threading.Event()
    running.set()

    def application() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while running.is_set():
                started = time.monotonic()
                conn.execute("SELECT count(*) FROM users")
                stalls.append(time.monotonic() - started)
                time.sleep(0.005)  # pacing, not synchronisation: spare the two cores

    with holding(database_url, "SELECT count(*) FROM users") as reader:
        app = threading.Thread(target=application, daemon=True)
        app.start()
        run = Background(project, *args, env=users)
        try:
            done = run.finish(BOUND)
        finally:
            run.kill()
            running.clear()
            app.join(10)
    line = one_line(done)
    assert done.returncode == 5, done.stderr
    assert f"pid {reader}" in line, line
    assert stalls and max(stalls) < 1.0, f"an application read waited {max(stalls):.2f}s"


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP port that accepts connections and never answers; its number."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def test_server_that_never_answers_ends_within_the_connect_timeout(
    cli: Cli, project: Path, black_hole: int
) -> None:
    """A server that accepts and never answers: check and migrate exit 3, health 7, within
    PREDEPLOY_CONNECT_TIMEOUT (2 s, libpq's least) plus the interpreter's start, with a line
    that says so (a one-letter password does not garble it)."""
    (project / "migrations").mkdir()
    env = project_env(
        f"postgresql://app:e@127.0.0.1:{black_hole}/app",
        project,
        PREDEPLOY_CONNECT_TIMEOUT="2s",
    )
    runs = [
        ("check", "--env", "staging"),
        ("migrate", "--env", "staging", "--yes"),
        ("health", "--env", "staging"),
    ]
    for (done, seconds), code in zip(at_once(cli, runs, env=env), (3, 3, 7), strict=True):
        line = one_line(done)
        assert done.returncode == code, done.stderr
        assert seconds < 7
        assert f"no answer from 127.0.0.1:{black_hole} within 2s" in line, line


def test_deadlock_with_another_session_is_one_line(
    cli: Cli, database_url: str, project: Path
) -> None:
    """A migration that deadlocks with another session (the server's DETAIL has a line per
    process): exit 5 with one line naming the migration and 40P01, rolled back."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE a (id int); CREATE TABLE b (id int)")
    write_migrations(
        project / "migrations", {"1_both": "LOCK TABLE a;\nLOCK TABLE b;\nCREATE TABLE c ();\n"}
    )
    env = project_env(database_url, project, PREDEPLOY_LOCK_TIMEOUT="5s")
    other = psycopg.connect(database_url, autocommit=True)
    other.execute("BEGIN")
    other.execute("LOCK TABLE b")
    run = Background(project, "migrate", "--env", "staging", "--yes", "--no-backup", env=env)
    try:
        wait_until(
            lambda: query_value(
                database_url,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND application_name = 'predeploy migrate' AND query LIKE 'LOCK TABLE b%%'",
            ),
            what="the migration to wait for b",
        )
        # the cycle: the migration waited first, so its deadlock check (after 1 s) ends it
        closing = threading.Thread(target=lambda: other.execute("LOCK TABLE a"), daemon=True)
        closing.start()
        done = run.finish(BOUND)
        closing.join(10)
    finally:
        run.kill()
        other.close()
    line = one_line(done)
    assert done.returncode == 5, done.stderr
    assert "1_both" in line and "[40P01]" in line, line
    assert query_value(database_url, "SELECT to_regclass('c')") is None


@pytest.fixture
def owner_url(database_url: str) -> Iterator[str]:
    """The test database handed to a login role that is not a superuser (and has no
    pg_read_all_stats): the URL predeploy runs with."""
    name, password = f"owner_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(conn.info.dbname), sql.Identifier(name)
            )
        )
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    try:
        yield f"postgresql://{name}:{password}@{info['host']}:{info['port']}/{info['dbname']}"
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(
                    sql.Identifier(conn.info.dbname)
                )
            )
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_a_holder_of_another_role_is_named_and_waited_for(
    cli: Cli, owner_url: str, database_url: str, project: Path
) -> None:
    """A superuser's idle `LOCK TABLE users`, seen from a role that cannot see its state: prod
    --yes waits BLOCKER_WAIT for it and staging's lock-timeout error names it (never "a
    session that finished before it could be named"); nothing is applied."""
    migrations = project / "migrations"
    write_migrations(migrations, {"1_users": "CREATE TABLE users (id int PRIMARY KEY);\n"})
    env = project_env(owner_url, project) | {"PREDEPLOY_ALLOW_NO_BACKUP": "1"}
    assert cli("migrate", "--env", "staging", "--yes", env=env).returncode == 0
    write_migrations(migrations, {"2_name": "ALTER TABLE users ADD COLUMN name text;\n"})
    with holding(database_url, "LOCK TABLE users") as holder:
        prod, prod_seconds = timed(cli, "migrate", "--env", "prod", "--yes", "--no-backup", env=env)
        staging, staging_seconds = timed(
            cli, "migrate", "--env", "staging", "--yes", "--no-backup", env=env
        )
    for done, seconds in ((prod, prod_seconds), (staging, staging_seconds)):
        line = one_line(done)
        assert done.returncode == 5, done.stderr
        assert seconds < BOUND
        assert f"pid {holder}" in line and "GRANT pg_read_all_stats" in line, line
    assert "PREDEPLOY_BLOCKER_WAIT" in one_line(prod)
    columns = query_value(
        database_url,
        "SELECT count(*) FROM information_schema.columns WHERE column_name = 'name'"
        " AND table_name = 'users'",
    )
    assert columns == 0
