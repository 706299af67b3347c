"""Applying migrations against a real PostgreSQL: history rows, failures, locks, resolve."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from predeploy.commands.resolve import resolve
from predeploy.commands.status import current as current_status
from predeploy.db.locks import MIGRATE_LOCK
from predeploy.errors import ConfigError, LockBusy, MigrationError
from predeploy.migrate.executor import MigrationFailed
from support import migrating
from support.project import MakeSettings, write_migrations

PRISMA_COLUMNS = [
    ("id", "character varying", 36, "NO", None),
    ("checksum", "character varying", 64, "NO", None),
    ("finished_at", "timestamp with time zone", None, "YES", None),
    ("migration_name", "character varying", 255, "NO", None),
    ("logs", "text", None, "YES", None),
    ("rolled_back_at", "timestamp with time zone", None, "YES", None),
    ("started_at", "timestamp with time zone", None, "NO", "now()"),
    ("applied_steps_count", "integer", None, "NO", "0"),
]


def rows(url: str, table: str = "_prisma_migrations") -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at, "
            f"started_at, applied_steps_count FROM {table} ORDER BY started_at"
        ).fetchall()


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {t for (t,) in found} - {"predeploy_runs"}  # the audit table: every run writes it


def test_history_table_is_prismas(
    make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """The history table has Prisma's columns, types, lengths, nullability and defaults."""
    write_migrations(migrations_dir, {"1_a": "SELECT 1;"})
    migrating.migrate(make_settings())
    with psycopg.connect(database_url) as conn:
        columns = conn.execute(
            "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_name = '_prisma_migrations'"
            " ORDER BY ordinal_position"
        ).fetchall()
        key = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = '_prisma_migrations'::regclass"
            " AND i.indisprimary"
        ).fetchall()
    assert columns == PRISMA_COLUMNS
    assert key == [("id",)]


def test_applies_each_migration_with_a_prisma_row(
    make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """Each migration leaves a row as Prisma writes it; a second run applies nothing."""
    scripts = {
        "20260101000000_users": "CREATE TABLE users (id int PRIMARY KEY);",
        "20260102000000_posts": "CREATE TABLE posts (id int, user_id int REFERENCES users)",
    }
    write_migrations(migrations_dir, scripts)
    result = migrating.migrate(make_settings())
    assert [a.name for a in result.applied] == list(scripts)
    recorded = rows(database_url)
    assert [r[3] for r in recorded] == list(scripts)
    for row_id, checksum, finished, name, logs, rolled_back, started, steps in recorded:
        assert uuid.UUID(str(row_id)).version == 4
        assert checksum == hashlib.sha256(scripts[str(name)].encode()).hexdigest()
        assert finished is not None and started is not None and finished >= started
        assert logs is None and rolled_back is None and steps == 1
    assert migrating.migrate(make_settings()).applied == []
    assert current_status(make_settings()).up_to_date


def test_custom_history_table_name(
    make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """PREDEPLOY_MIGRATIONS_TABLE names the history table."""
    write_migrations(migrations_dir, {"1_a": "CREATE TABLE a (id int);"})
    migrating.migrate(make_settings(PREDEPLOY_MIGRATIONS_TABLE="schema_history"))
    assert [r[3] for r in rows(database_url, "schema_history")] == ["1_a"]
    assert "_prisma_migrations" not in tables(database_url)


def test_sql_error_names_migration_sqlstate_line_and_column(
    make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """A SQL error: exit 5 with name, SQLSTATE and position; earlier migrations stay."""
    write_migrations(
        migrations_dir,
        {
            "1_ok": "CREATE TABLE ok (id int);",
            "2_bad": "CREATE TABLE half (id int);\n\nALTER TABLE nope\n  ADD COLUMN x int;\n",
            "3_later": "CREATE TABLE later (id int);",
        },
    )
    with pytest.raises(MigrationFailed) as err:
        migrating.migrate(make_settings())
    failure = err.value
    assert failure.exit_code == 5
    assert (failure.name, failure.sqlstate, failure.line, failure.column) == (
        "2_bad",
        "42P01",
        3,
        1,
    )
    assert 'relation "nope" does not exist' in str(failure)
    assert "migration 2_bad failed at line 3, column 1" in str(failure)
    assert tables(database_url) == {"_prisma_migrations", "ok"}
    assert [r[3] for r in rows(database_url)] == ["1_ok"]


def test_outside_transaction_failure_leaves_a_failed_row_that_blocks(
    make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """A CONCURRENTLY file that fails part-way is recorded failed and blocks until resolved."""
    write_migrations(
        migrations_dir,
        {
            "1_table": "CREATE TABLE t (a int, b int);",
            "2_indexes": "CREATE INDEX CONCURRENTLY t_a ON t (a);\n"
            "CREATE INDEX CONCURRENTLY t_c ON t (c);\n",
            "3_after": "CREATE TABLE after (id int);",
        },
    )
    with pytest.raises(
        MigrationFailed, match=r"2_indexes failed at line 2, column 1 of migration.sql \[42703\]"
    ):
        migrating.migrate(make_settings())
    failed = [r for r in rows(database_url) if r[3] == "2_indexes"]
    assert len(failed) == 1
    assert failed[0][2] is None and failed[0][5] is None  # finished_at, rolled_back_at
    assert 'column "c" does not exist' in str(failed[0][4])
    assert failed[0][7] == 1  # one statement had run
    status = current_status(make_settings())
    assert [e.name for e in status.having("failed")] == ["2_indexes"]

    with pytest.raises(MigrationError, match=r"predeploy resolve --rolled-back 2_indexes"):
        migrating.migrate(make_settings())
    assert "after" not in tables(database_url)

    (migrations_dir / "2_indexes" / "migration.sql").write_text(
        "DROP INDEX CONCURRENTLY IF EXISTS t_a;\nCREATE INDEX CONCURRENTLY t_b ON t (b);\n"
    )
    assert resolve(make_settings(), applied=None, rolled_back="2_indexes").marked == "rolled_back"
    result = migrating.migrate(make_settings())
    assert [(a.name, a.transactional) for a in result.applied] == [
        ("2_indexes", False),
        ("3_after", True),
    ]
    assert current_status(make_settings()).up_to_date


def test_server_position_points_into_the_statement(
    make_settings: MakeSettings, migrations_dir: Path
) -> None:
    """When the server gives a position, line and column point at the very token."""
    write_migrations(
        migrations_dir, {"1_typo": "CREATE TABLE a (id int);\nSELECT id,\n       nope FROM a;\n"}
    )
    with pytest.raises(MigrationFailed) as err:
        migrating.migrate(make_settings())
    assert (err.value.line, err.value.column, err.value.sqlstate) == (3, 8, "42703")


def test_script_with_its_own_transaction(
    make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """A file with BEGIN/COMMIT and SET LOCAL runs as written."""
    write_migrations(
        migrations_dir,
        {
            "1_own": "BEGIN;\nSET LOCAL statement_timeout = '5s';\nCREATE TABLE own (id int);\n"
            "INSERT INTO own VALUES (1);\nCOMMIT;\nCREATE INDEX CONCURRENTLY own_id ON own (id)"
        },
    )
    (applied,) = migrating.migrate(make_settings()).applied
    assert not applied.transactional
    assert "own" in tables(database_url)
    assert rows(database_url)[0][2] is not None


def test_edited_migration_blocks_outside_dev_only(
    make_settings: MakeSettings, migrations_dir: Path
) -> None:
    """An applied file that changed: staging refuses, naming file and checksums; dev warns."""
    write_migrations(migrations_dir, {"1_a": "CREATE TABLE a (id int);\n"})
    migrating.migrate(make_settings())
    (migrations_dir / "1_a" / "migration.sql").write_text("CREATE TABLE a (id bigint);\n")
    write_migrations(migrations_dir, {"2_b": "CREATE TABLE b (id int);"})
    assert [e.name for e in current_status(make_settings()).having("edited")] == ["1_a"]
    with pytest.raises(MigrationError, match=r"1_a/migration.sql changed after it was applied"):
        migrating.migrate(make_settings("prod"))
    assert [a.name for a in migrating.migrate(make_settings("dev")).applied] == ["2_b"]


def test_line_ending_change_is_not_an_edit(
    make_settings: MakeSettings, migrations_dir: Path
) -> None:
    """Git turning LF into CRLF does not make an applied migration edited."""
    write_migrations(migrations_dir, {"1_a": b"CREATE TABLE a (id int);\nSELECT 1;\n"})
    migrating.migrate(make_settings())
    write_migrations(migrations_dir, {"1_a": b"CREATE TABLE a (id int);\r\nSELECT 1;\r\n"})
    assert current_status(make_settings()).up_to_date


def test_rows_without_folders_are_reported_missing(
    make_settings: MakeSettings, migrations_dir: Path
) -> None:
    """A recorded migration whose folder is gone is reported, not ignored."""
    write_migrations(migrations_dir, {"1_a": "SELECT 1;", "2_b": "SELECT 2;"})
    migrating.migrate(make_settings())
    for child in (migrations_dir / "2_b").iterdir():
        child.unlink()
    (migrations_dir / "2_b").rmdir()
    status = current_status(make_settings())
    assert [e.name for e in status.having("missing")] == ["2_b"]
    assert not status.up_to_date


def test_resolve_applied_and_its_refusals(
    make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """--applied records a pending migration as done; resolving what is applied is refused."""
    write_migrations(migrations_dir, {"1_a": "CREATE TABLE a (id int);"})
    assert resolve(make_settings(), applied="1_a", rolled_back=None).marked == "applied"
    assert migrating.migrate(make_settings()).applied == []
    assert "a" not in tables(database_url)
    (row,) = rows(database_url)
    assert row[2] is not None and row[7] == 0
    with pytest.raises(ConfigError, match="already applied"):
        resolve(make_settings(), applied="1_a", rolled_back=None)
    with pytest.raises(ConfigError, match=r"is not failed \(applied\)"):
        resolve(make_settings(), applied=None, rolled_back="1_a")
    with pytest.raises(ConfigError, match="not in the migrations folder"):
        resolve(make_settings(), applied="9_nope", rolled_back=None)


def test_busy_migration_lock_names_the_holder(
    make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """Another session holding Prisma's advisory lock: exit 6 naming pid and application."""
    write_migrations(migrations_dir, {"1_a": "CREATE TABLE a (id int);"})
    with psycopg.connect(
        database_url, application_name="prisma-migrate", autocommit=True
    ) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
        started = time.monotonic()
        with pytest.raises(LockBusy) as err:
            migrating.migrate(make_settings(PREDEPLOY_LOCK_WAIT="1s"))
        assert 1 <= time.monotonic() - started < 5
        assert err.value.exit_code == 6
        assert f"pid {holder.info.backend_pid}" in str(err.value)
        assert "application prisma-migrate" in str(err.value)
    assert migrating.migrate(make_settings()).applied[0].name == "1_a"


def test_lock_timeout_retries_then_names_the_blocker(
    make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """A held table lock: the migration retries, then fails naming the blocking session."""
    write_migrations(migrations_dir, {"1_t": "CREATE TABLE t (id int);"})
    migrating.migrate(make_settings())
    write_migrations(migrations_dir, {"2_alter": "ALTER TABLE t ADD COLUMN x int;"})
    with psycopg.connect(database_url) as blocker:
        blocker.execute("SELECT * FROM t")  # holds ACCESS SHARE, idle in transaction
        with pytest.raises(MigrationError) as err:
            migrating.migrate(
                make_settings(PREDEPLOY_LOCK_TIMEOUT="200ms", PREDEPLOY_LOCK_RETRIES="2")
            )
        message = str(err.value)
        assert (
            "2_alter could not get its locks within PREDEPLOY_LOCK_TIMEOUT (0.2s) in 3 tries"
            in message
        )
        assert f"pid {blocker.info.backend_pid} (user " in message
        assert "idle in transaction for" in message
        assert "SELECT * FROM t" in message
    assert [r[3] for r in rows(database_url)] == ["1_t"]


def test_lock_timeout_retry_succeeds_when_the_blocker_goes(
    make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """When the blocker ends during the retries, the migration completes."""
    write_migrations(migrations_dir, {"1_t": "CREATE TABLE t (id int);"})
    migrating.migrate(make_settings())
    write_migrations(migrations_dir, {"2_alter": "ALTER TABLE t ADD COLUMN x int;"})
    blocker = psycopg.connect(database_url)
    blocker.execute("SELECT * FROM t")
    release = threading.Timer(1.0, blocker.close)
    release.start()
    try:
        (applied,) = migrating.migrate(
            make_settings(PREDEPLOY_LOCK_TIMEOUT="200ms", PREDEPLOY_LOCK_RETRIES="5")
        ).applied
    finally:
        release.cancel()
        blocker.close()
    assert applied.attempts > 1
