"""Issue 22, item 3: a failed CREATE INDEX CONCURRENTLY advises dropping an INVALID index
only when it left one (looked up in pg_index), and names it, schema-qualified.

Before, every failed named build said "an INVALID index may be left behind", also when
the build failed before making anything (a column that does not exist), and an unnamed
build said nothing about the index it did leave.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import psycopg

from conftest import Cli, write_migrations
from hazards import project_env, query_value

_INVALID = "SELECT count(*) FROM pg_index WHERE NOT indisvalid"


def _failed_line(cli: Cli, database_url: str, project: Path, script: str) -> str:
    write_migrations(project / "migrations", {"1_i": script})
    done = cli(
        "migrate", "--env", "staging", "--yes", "--no-backup",
        env=project_env(database_url, project),
    )  # fmt: skip
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.strip().splitlines()[-1]


def _duplicates(database_url: str, schema: str = "public") -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".dup (v int); INSERT INTO "{schema}".dup VALUES (1), (1)'
        )


def test_a_build_that_fails_before_building_gives_no_drop_advice(
    cli: Cli, database_url: str, project: Path
) -> None:
    """A column that does not exist: nothing was built, so no INVALID index is named."""
    _duplicates(database_url)
    line = _failed_line(cli, database_url, project, "CREATE INDEX CONCURRENTLY d_i ON dup (nope);")
    assert "nope" in line and "resolve --rolled-back 1_i" in line, line
    assert "INVALID" not in line and "DROP INDEX" not in line, line
    assert query_value(database_url, _INVALID) == 0


def test_an_unnamed_build_on_duplicates_names_the_index_it_left(
    cli: Cli, database_url: str, project: Path
) -> None:
    """A unique build without a name, in another schema, fails on duplicates: the INVALID
    index PostgreSQL named is named, schema-qualified; dropping it as advised works."""
    _duplicates(database_url, "Sales")
    line = _failed_line(
        cli, database_url, project, 'CREATE UNIQUE INDEX CONCURRENTLY ON "Sales".dup (v);'
    )
    advice = 'DROP INDEX CONCURRENTLY "Sales"."dup_v_idx"'
    assert "INVALID index" in line and advice in line, line
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(advice)
    assert query_value(database_url, _INVALID) == 0


def test_an_invalid_index_from_before_is_not_named(
    cli: Cli, database_url: str, project: Path
) -> None:
    """An INVALID index the run did not make (an earlier failure) is not named as its own;
    the one this build left is."""
    _duplicates(database_url)
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        contextlib.suppress(psycopg.errors.UniqueViolation),
    ):
        conn.execute("CREATE UNIQUE INDEX CONCURRENTLY old_v ON dup (v)")
    line = _failed_line(
        cli, database_url, project, "CREATE UNIQUE INDEX CONCURRENTLY new_v ON dup (v);"
    )
    assert 'DROP INDEX CONCURRENTLY "public"."new_v"' in line, line
    assert "old_v" not in line, line
