"""Batches: runs of transactional migrations in one pipeline, each its own transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from predeploy.errors import MigrationError
from predeploy.migrate import batch
from predeploy.migrate import discovery as migrations
from predeploy.migrate.executor import MigrationFailed
from support import migrating
from support.project import MakeSettings, write_migrations


@pytest.fixture
def big_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first batch may hold ten migrations (its size is otherwise learnt from the pace)."""
    monkeypatch.setattr(batch, "FIRST_SIZE", 10)


def names(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL"
            " ORDER BY started_at"
        )
        return [n for (n,) in found]


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        found = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {t for (t,) in found} - {"_prisma_migrations", "predeploy_runs"}  # history, audit


def batch_sizes(logs: list[dict[str, Any]]) -> dict[str, int | None]:
    """Each applied migration and the size of the batch it travelled in (None: alone)."""
    return {e["migration"]: e.get("batch") for e in logs if e["event"] == "migration_applied"}


def test_failure_in_the_middle_of_a_batch(
    big_batches: None, make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """Earlier migrations stay with their rows, later ones never run, the error names the
    failing one with its line and column."""
    write_migrations(
        migrations_dir,
        {
            "1_a": "CREATE TABLE a (id int);",
            "2_b": "CREATE TABLE b (id int);\nINSERT INTO b VALUES (1);",
            "3_bad": "CREATE TABLE c (id int);\n\nINSERT INTO nope VALUES (1);\n",
            "4_d": "CREATE TABLE d (id int);",
            "5_e": "CREATE TABLE e (id int);",
        },
    )
    reported: list[str] = []
    with capture_logs() as logs, pytest.raises(MigrationFailed) as err:
        migrating.migrate(make_settings(), on_applied=reported.append)
    failure = err.value
    assert (failure.name, failure.sqlstate, failure.line, failure.column) == (
        "3_bad",
        "42P01",
        3,
        13,
    )
    assert "it was rolled back" in str(failure)
    assert reported == ["1_a", "2_b"]
    assert batch_sizes(logs) == {"1_a": 5, "2_b": 5}
    assert names(database_url) == ["1_a", "2_b"]
    assert tables(database_url) == {"a", "b"}
    with psycopg.connect(database_url) as conn:  # the failed transaction left no row at all
        assert conn.execute("SELECT count(*) FROM _prisma_migrations").fetchone() == (2,)

    (migrations_dir / "3_bad" / "migration.sql").write_text("CREATE TABLE c (id int);\n")
    result = migrating.migrate(make_settings())
    assert [a.name for a in result.applied] == ["3_bad", "4_d", "5_e"]
    assert tables(database_url) == {"a", "b", "c", "d", "e"}


def test_lock_timeout_in_a_batch_retries_that_migration_alone(
    big_batches: None, make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """A lock timeout mid-batch: the ones before are in, it is retried alone once the
    blocker is gone, then the rest are applied."""
    write_migrations(migrations_dir, {"0_t": "CREATE TABLE t (id int);"})
    migrating.migrate(make_settings())
    write_migrations(
        migrations_dir,
        {
            "1_a": "CREATE TABLE a (id int);",
            "2_b": "CREATE TABLE b (id int);",
            "3_alter": "ALTER TABLE t ADD COLUMN x int;",
            "4_d": "CREATE TABLE d (id int);",
        },
    )
    blocker = psycopg.connect(database_url)
    blocker.execute("SELECT * FROM t")  # ACCESS SHARE, idle in transaction

    def on_applied(name: str) -> None:
        if name == "2_b":  # the batch is back: 3_alter has met the lock timeout
            blocker.close()

    settings = make_settings(PREDEPLOY_LOCK_TIMEOUT="200ms", PREDEPLOY_LOCK_RETRIES="3")
    try:
        with capture_logs() as logs:
            result = migrating.migrate(settings, on_applied=on_applied)
    finally:
        blocker.close()
    assert [(a.name, a.attempts) for a in result.applied] == [
        ("1_a", 1),
        ("2_b", 1),
        ("3_alter", 2),
        ("4_d", 1),
    ]
    sizes = batch_sizes(logs)
    assert (sizes["1_a"], sizes["2_b"], sizes["3_alter"]) == (4, 4, None)
    retries = [e for e in logs if e["event"] == "lock_timeout_retry"]
    assert [e["migration"] for e in retries] == ["3_alter"]
    assert names(database_url) == ["0_t", "1_a", "2_b", "3_alter", "4_d"]


def test_lock_timeout_in_a_batch_gives_up_naming_the_blocker(
    big_batches: None, make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """When the retries run out, the error names the holder; nothing after it ran."""
    write_migrations(migrations_dir, {"0_t": "CREATE TABLE t (id int);"})
    migrating.migrate(make_settings())
    write_migrations(
        migrations_dir,
        {
            "1_a": "CREATE TABLE a (id int);",
            "2_alter": "ALTER TABLE t ADD COLUMN x int;",
            "3_c": "CREATE TABLE c (id int);",
        },
    )
    with psycopg.connect(database_url) as blocker:
        blocker.execute("SELECT * FROM t")
        settings = make_settings(PREDEPLOY_LOCK_TIMEOUT="200ms", PREDEPLOY_LOCK_RETRIES="1")
        with pytest.raises(MigrationError) as err:
            migrating.migrate(settings)
        assert "2_alter could not get its locks" in str(err.value)
        assert f"pid {blocker.info.backend_pid} (user " in str(err.value)
    assert names(database_url) == ["0_t", "1_a"]
    assert tables(database_url) == {"t", "a"}


def test_batches_end_at_a_migration_outside_a_transaction(
    big_batches: None, make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """A CONCURRENTLY migration runs alone, between the batches before and after it."""
    write_migrations(
        migrations_dir,
        {
            "1_a": "CREATE TABLE a (id int);",
            "2_b": "CREATE TABLE b (id int);",
            "3_index": "CREATE INDEX CONCURRENTLY a_id ON a (id);",
            "4_c": "CREATE TABLE c (id int);",
            "5_d": "CREATE TABLE d (id int);",
        },
    )
    with capture_logs() as logs:
        result = migrating.migrate(make_settings())
    assert [a.transactional for a in result.applied] == [True, True, False, True, True]
    assert batch_sizes(logs) == {"1_a": 2, "2_b": 2, "3_index": None, "4_c": 2, "5_d": 2}
    assert names(database_url) == ["1_a", "2_b", "3_index", "4_c", "5_d"]


def test_a_migration_that_changes_the_session_ends_its_batch(
    big_batches: None, make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """SET statement_timeout in a migration: the next one runs under the configured limits."""
    write_migrations(
        migrations_dir,
        {
            "1_a": "CREATE TABLE a (id int);",
            "2_set": "SET statement_timeout = '1234ms';\nCREATE TABLE b (id int);",
            "3_look": "CREATE TABLE seen AS SELECT current_setting('statement_timeout') AS v;",
        },
    )
    with capture_logs() as logs:
        migrating.migrate(make_settings(PREDEPLOY_STATEMENT_TIMEOUT="7s"))
    assert batch_sizes(logs) == {"1_a": 2, "2_set": 2, "3_look": None}
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT v FROM seen").fetchone() == ("7s",)


def test_take_and_next_size(tmp_path: Path) -> None:
    """What goes into one batch, and how the next batch's size follows the pace."""
    write_migrations(
        tmp_path,
        {
            "1": "SELECT 1;",
            "2": "SELECT 2;",
            "3": "SET search_path = x;",
            "4": "SELECT 4;",
            "5": "VACUUM;",
            "6": "SELECT 6 FROM;  -- pglast cannot split it",
        },
    )
    found = migrations.discover(tmp_path)
    assert [m.name for m in batch.take(found, 10)] == ["1", "2", "3"]
    assert [m.name for m in batch.take(found, 2)] == ["1", "2"]
    assert [m.name for m in batch.take(found[3:], 10)] == ["4"]
    assert [m.name for m in batch.take(found[4:], 10)] == ["5"]
    assert [m.name for m in batch.take(found[5:], 10)] == ["6"]
    assert batch.next_size(0.001, 1) == 2  # at most double
    assert batch.next_size(1.0, 100) == 50  # about half a second of work at that pace
    assert batch.next_size(3.0, 1) == 1
    assert batch.next_size(0.0, 150) == batch.MOST_MIGRATIONS
