"""SIGINT, SIGTERM and SIGKILL during a backup and during the apply.

Afterwards: exit 130/143 with one line, no pg_dump/pg_restore left running, no passfile
anywhere under the temp dir, no `.partial` left (the next run sweeps what a SIGKILL
left), and for the apply an audit row `interrupted` and a runbook.
"""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from predeploy.config.settings import load_settings
from support import migrating
from support.hazards import (
    Background,
    alive,
    children,
    files_holding,
    one_line,
    predeploy_sessions,
    program_of,
    project_env,
    query_value,
    wait_until,
)
from support.project import write_migrations
from support.servers import Server

# rows of random text: ~50 MB of table, a ~24 MB compressed dump that takes pg_dump a
# second or two here, long enough to be caught mid-way
ROWS = 400_000


@pytest.fixture(scope="module")
def big(pg_server: Server) -> Iterator[str]:
    """A database with one large table (shared by the backup cases, which only read it)."""
    name = f"t_big_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = pg_server.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE items AS SELECT g AS id, md5(random()::text) || md5(random()::text)"
            " || md5(random()::text) AS body FROM generate_series(1, %s) g",
            (ROWS,),
        )
    try:
        yield url
    finally:
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def password_of(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url)["password"])


def partials(project: Path) -> list[Path]:
    return sorted((project / "backups").rglob(".*.partial"))


def start_backup(project: Path, url: str) -> tuple[Background, Path]:
    """`predeploy backup` in the background with its own TMPDIR; (run, that TMPDIR)."""
    tmpdir = project / "tmp"
    tmpdir.mkdir(exist_ok=True)
    run = Background(
        project, "backup", "--env", "staging", env=project_env(url, project), tmpdir=tmpdir
    )
    return run, tmpdir


def midway(run: Background, project: Path) -> list[int]:
    """Wait until pg_dump runs and has written a part of the dump; every child's pid."""

    def writing() -> list[int] | None:
        kids = children(run.pid)
        dumping = [k for k in kids if program_of(k) == "pg_dump"]
        written = [p for p in partials(project) if p.is_file() and p.stat().st_size > 1 << 20]
        return kids if dumping and written else None

    found = wait_until(writing, what="pg_dump to be mid-way")
    assert run.process.poll() is None, "the backup ended before it could be interrupted"
    assert isinstance(found, list)
    return found


def no_secret_left(project: Path, tmpdir: Path, password: str) -> None:
    """No file of the run (dumps aside: they hold data, not the password), no passfile
    under its TMPDIR or the system temp dir, holds the password."""
    assert files_holding(tmpdir, password) == []
    assert files_holding(project / "logs", password) == []
    for folder in Path("/tmp").glob("predeploy-*"):
        if folder.is_dir() and (folder / "pgpass").exists():
            assert password.encode() not in (folder / "pgpass").read_bytes(), folder


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_signal_mid_backup_kills_children_and_leaves_nothing(
    big: str, project: Path, signum: int, code: int
) -> None:
    """SIGINT/SIGTERM/SIGHUP to predeploy while pg_dump streams: exit 130/143/129 with one
    line within seconds, pg_dump and pg_restore gone, no partial dump, no passfile anywhere."""
    run, tmpdir = start_backup(project, big)
    try:
        kids = midway(run, project)
        assert {"pg_dump", "pg_restore"} <= {program_of(k) for k in kids}
        os.kill(run.pid, signum)
        done = run.finish(10)
    finally:
        run.kill()
    assert done.returncode == code, done.stderr
    line = one_line(done)
    assert signal.Signals(signum).name in line, line
    assert [k for k in kids if alive(k)] == []
    assert partials(project) == []
    assert list((project / "backups").rglob("*.dump")) == []
    no_secret_left(project, tmpdir, password_of(big))
    wait_until(lambda: not predeploy_sessions(big), timeout=5, what="the dump's sessions to end")


def test_sigkill_mid_backup_is_swept_by_the_next(big: str, project: Path) -> None:
    """SIGKILL while pg_dump streams: its children die with their pipes, the partial it
    left is removed by the next backup, which succeeds; no passfile on disk at any time."""
    run, tmpdir = start_backup(project, big)
    try:
        kids = midway(run, project)
        os.kill(run.pid, signal.SIGKILL)
        assert run.finish(10).returncode == -signal.SIGKILL
    finally:
        run.kill()
    wait_until(lambda: not [k for k in kids if alive(k)], timeout=10, what="children to die")
    left = partials(project)
    assert left, "a SIGKILL gives no chance to clean up: the partial is still there"
    no_secret_left(project, tmpdir, password_of(big))
    again, _ = start_backup(project, big)
    done = again.finish(60)
    assert done.returncode == 0, done.stderr
    assert partials(project) == []
    assert not any(p.exists() for p in left)
    assert len(list((project / "backups").rglob("*.dump"))) == 1
    no_secret_left(project, tmpdir, password_of(big))


def test_sigterm_mid_migrate_backup_reports_and_changes_nothing(big: str, project: Path) -> None:
    """SIGTERM while migrate's own backup streams: exit 143 with one line, the dump's
    children gone, no partial, nothing applied, an `interrupted` audit row and a runbook
    that says nothing changed."""
    write_migrations(project / "migrations", {"1_never": "CREATE TABLE never (id int);"})
    tmpdir = project / "tmp"
    tmpdir.mkdir()
    run = Background(
        project, "migrate", "--env", "staging", "--yes", env=project_env(big, project),
        tmpdir=tmpdir,
    )  # fmt: skip
    try:
        kids = midway(run, project)
        os.kill(run.pid, signal.SIGTERM)
        done = run.finish(10)
    finally:
        run.kill()
    assert done.returncode == 143, done.stderr
    assert "SIGTERM" in one_line(done)
    assert [k for k in kids if alive(k)] == []
    assert partials(project) == []
    assert query_value(big, "SELECT to_regclass('never')") is None
    (log_file,) = (project / "logs").glob("predeploy-staging-*.log")
    run_id = log_file.stem.rsplit("-", 1)[1]
    outcome = query_value(big, "SELECT outcome FROM predeploy_runs WHERE run_id = %s", run_id)
    assert outcome == "interrupted"
    runbook = project / "logs" / f"runbook-staging-{run_id}.txt"
    assert "changed nothing" in runbook.read_text()
    no_secret_left(project, tmpdir, password_of(big))


@pytest.fixture
def sleeping(database_url: str, project: Path) -> dict[str, str]:
    """1_base applied; 2_slow pending: a table, then pg_sleep(60) in the same transaction."""
    migrations = project / "migrations"
    write_migrations(migrations, {"1_base": "CREATE TABLE base (id int);"})
    env = project_env(database_url, project)
    migrating.migrate(load_settings("staging", project, env))
    write_migrations(migrations, {"2_slow": "CREATE TABLE slow (id int);\nSELECT pg_sleep(60);\n"})
    return env


def sleeping_now(url: str) -> None:
    """Wait until the migration's `SELECT pg_sleep(60)` runs in the database at ``url``."""
    wait_until(
        lambda: query_value(
            url,
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
            " AND query LIKE 'SELECT pg_sleep(60)%%' AND datname = current_database()",
        ),
        what="the migration's pg_sleep",
    )


@pytest.mark.parametrize(
    ("signum", "code"),
    [
        (signal.SIGINT, 130),
        (signal.SIGTERM, 143),
        (signal.SIGHUP, 129),
    ],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_signal_mid_apply_rolls_back_and_reports(
    sleeping: dict[str, str], database_url: str, project: Path, signum: int, code: int
) -> None:
    """SIGINT/SIGTERM/SIGHUP while a migration runs: its transaction is cancelled and rolled
    back, the lock released, exit 130/143/129 with one line, an `interrupted` audit row, a
    runbook."""
    run = Background(
        project, "migrate", "--env", "staging", "--yes", "--no-backup", "--json", env=sleeping
    )
    try:
        sleeping_now(database_url)
        os.kill(run.pid, signum)
        done = run.finish(15)
    finally:
        run.kill()
    assert done.returncode == code, done.stderr
    line = one_line(done)
    assert signal.Signals(signum).name in line, line
    wait_until(lambda: not predeploy_sessions(database_url), timeout=5, what="sessions to end")
    assert query_value(database_url, "SELECT to_regclass('slow')") is None
    names = query_value(database_url, "SELECT array_agg(migration_name) FROM _prisma_migrations")
    assert names == ["1_base"]
    (log_file,) = (project / "logs").glob("predeploy-staging-*.log")
    run_id = log_file.stem.rsplit("-", 1)[1]
    outcome = query_value(
        database_url, "SELECT outcome FROM predeploy_runs WHERE run_id = %s", run_id
    )
    assert outcome == "interrupted"
    runbook = project / "logs" / f"runbook-staging-{run_id}.txt"
    assert "changed nothing" in runbook.read_text()


def test_signal_mid_migration_outside_a_transaction_says_what_it_left(
    sleeping: dict[str, str], database_url: str, project: Path
) -> None:
    """SIGTERM after a CREATE INDEX CONCURRENTLY ran, during the next statement: the runbook
    said "changed nothing"; now the one line, the history row and the runbook say the
    migration ran 1 of its 2 statements and is recorded as failed, and how to resolve it."""
    migrations = project / "migrations"
    shutil.rmtree(migrations / "2_slow")  # only 2_index is pending
    write_migrations(
        migrations,
        {"2_index": "CREATE INDEX CONCURRENTLY base_id ON base (id);\nSELECT pg_sleep(60);\n"},
    )
    run = Background(project, "migrate", "--env", "staging", "--yes", "--no-backup", env=sleeping)
    try:
        sleeping_now(database_url)
        os.kill(run.pid, signal.SIGTERM)
        done = run.finish(15)
    finally:
        run.kill()
    assert done.returncode == 143, done.stderr
    line = one_line(done)
    assert "2_index ran 1 of its 2 statement(s) outside a transaction" in line, line
    assert "resolve --rolled-back 2_index" in line
    assert query_value(database_url, "SELECT to_regclass('base_id')") == "base_id"
    logs = query_value(
        database_url,
        "SELECT logs FROM _prisma_migrations WHERE migration_name = '2_index'"
        " AND finished_at IS NULL",
    )
    assert logs == "stopped by SIGTERM after 1 of its 2 statement(s) had run"
    runbooks = [p.read_text() for p in (project / "logs").glob("runbook-staging-*.txt")]
    (text,) = [t for t in runbooks if "2_index" in t]  # not the runbook of the setup's run
    assert "changed nothing" not in text
    assert "#   CREATE INDEX CONCURRENTLY base_id ON base (id)" in text  # what ran, to undo
    assert "predeploy resolve --env staging --rolled-back 2_index" in text
