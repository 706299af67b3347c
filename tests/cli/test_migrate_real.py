"""The engine against real histories, real concurrency and real kills."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from predeploy.commands.status import current as current_status
from support import migrating
from support.project import MakeSettings, schema_dump, write_migrations

CORPORA = Path(__file__).resolve().parents[1] / "data" / "corpora"


def normalise(dump: str) -> str:
    """Drop what differs between pg_dump/server versions, not between schemas."""
    lines = []
    for line in dump.splitlines():
        if line.startswith(("--", "\\restrict", "\\unrestrict", "SET transaction_timeout")):
            continue
        if not line.strip() or " OWNER TO " in line:  # the owner is whoever ran the test
            continue
        # PostgreSQL 18 names NOT NULL constraints and dumps names that differ from the default
        lines.append(re.sub(r" CONSTRAINT \w+ NOT NULL", " NOT NULL", line))
    return "\n".join(lines)


@pytest.mark.slow
def test_langfuse_corpus_matches_its_reference_schema(
    make_settings: MakeSettings, database_url: str
) -> None:
    """All 434 langfuse migrations apply, and the schema equals reference-schema.sql."""
    corpus = CORPORA / "langfuse"
    settings = make_settings(PREDEPLOY_MIGRATIONS_DIR=str(corpus / "migrations"))
    result = migrating.migrate(settings)
    assert len(result.applied) == 434
    assert sum(not a.transactional for a in result.applied) == 111
    reference = normalise((corpus / "reference-schema.sql").read_text())
    dumped = schema_dump(database_url, "_prisma_migrations", "predeploy_runs*")
    assert normalise(dumped) == reference
    assert migrating.migrate(settings).applied == []
    assert current_status(settings).up_to_date


def generated(count: int, sleep: float = 0.0) -> dict[str, str]:
    """``count`` migrations: each a table and a ledger line, optionally slowed down."""
    scripts = {"000_ledger": "CREATE TABLE ledger (name text PRIMARY KEY);"}
    for i in range(1, count + 1):
        pause = f"SELECT pg_sleep({sleep});\n" if sleep else ""
        scripts[f"{i:03d}_m"] = (
            f"CREATE TABLE m{i} (id int PRIMARY KEY);\n{pause}"
            f"INSERT INTO ledger VALUES ('{i:03d}_m');\n"
        )
    return scripts


def migrate_process(settings_env: dict[str, str], project: Path) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "PG"))}
    environ.update(settings_env)
    return subprocess.Popen(
        [sys.executable, "-m", "predeploy", "migrate", "--env", "dev", "--json"],
        cwd=project,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_four_concurrent_runs_apply_each_migration_once(
    project: Path, migrations_dir: Path, database_url: str
) -> None:
    """Four `invoke migrate` at once on 200 pending: each migration applied exactly once."""
    write_migrations(migrations_dir, generated(200))
    env = {"DATABASE_URL": database_url, "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir)}
    runs = [migrate_process(env, project) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:  # read every pipe at once: a full one blocks its run
        errors = list(pool.map(lambda run: run.communicate(timeout=120)[1], runs))
    outcomes = [(run.returncode, err) for run, err in zip(runs, errors, strict=True)]
    assert [code for code, _ in outcomes] == [0, 0, 0, 0], outcomes
    with psycopg.connect(database_url) as conn:
        names = [n for (n,) in conn.execute("SELECT migration_name FROM _prisma_migrations")]
        ledger = conn.execute("SELECT count(*) FROM ledger").fetchone()
    assert len(names) == len(set(names)) == 201
    assert ledger == (200,)


@pytest.mark.slow
def test_sigkill_never_splits_a_migration_from_its_row(
    project: Path, migrations_dir: Path, database_url: str
) -> None:
    """Killed with SIGKILL at random moments (20 times): changes and rows always agree."""
    write_migrations(migrations_dir, generated(300, sleep=0.05))
    env = {"DATABASE_URL": database_url, "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir)}
    rng = random.Random(20261124)
    kills = 0
    for _ in range(20):
        run = migrate_process(env, project)
        time.sleep(rng.uniform(0.3, 1.5))
        if run.poll() is None:
            run.send_signal(signal.SIGKILL)
            kills += 1
            run.communicate(timeout=60)
        else:  # it finished before the kill: it must have succeeded, not tripped on a leftover
            assert run.returncode == 0, run.communicate()[1]
        assert_rows_match_changes(database_url)
    assert kills >= 18  # the runs were really cut short, mid-history
    final = migrate_process(env, project)
    final.communicate(timeout=120)  # reads the pipes: a full one would block the run
    assert final.returncode == 0
    assert_rows_match_changes(database_url)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM ledger").fetchone() == (300,)


def assert_rows_match_changes(url: str) -> None:
    """Every generated migration's table and ledger line exist exactly when its row does.

    One snapshot for all three looks: the killed client's server session may still be
    finishing what it sent, and commits while we look.
    """
    with psycopg.connect(url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

        def exists(table: str) -> bool:
            return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (
                True,
            )

        recorded: set[str] = set()
        unfinished = 0
        if exists("_prisma_migrations"):
            rows = conn.execute("SELECT migration_name, finished_at FROM _prisma_migrations")
            for name, finished in rows:
                unfinished += finished is None
                if finished is not None and name != "000_ledger":
                    recorded.add(name)
        made = {
            f"{int(t[1:]):03d}_m"
            for (t,) in conn.execute(
                "SELECT tablename FROM pg_tables"
                " WHERE schemaname = 'public' AND tablename ~ '^m[0-9]+$'"
            )
        }
        ledger = (
            {n for (n,) in conn.execute("SELECT name FROM ledger")} if exists("ledger") else set()
        )
    assert recorded == made == ledger
    assert unfinished == 0
