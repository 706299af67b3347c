"""A failed CREATE INDEX CONCURRENTLY advises dropping an INVALID index
only when it left one (looked up in pg_index), and names it, schema-qualified.

Before, every failed named build said "an INVALID index may be left behind", also when
the build failed before making anything (a column that does not exist), and an unnamed
build said nothing about the index it did leave.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from support.cli import Cli
from support.environ import OUR_VARIABLES
from support.hazards import project_env, query_value
from support.project import write_migrations
from support.receivers import Receiver
from support.wayback import commands

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


@pytest.mark.usefixtures("apprise_loaded")
def test_the_runbook_drops_the_invalid_index_before_the_resolve(
    cli: Cli, receiver: Receiver, database_url: str, project: Path
) -> None:
    """Two builds: the first done, the second (UNIQUE over duplicates) left INVALID. The
    runbook and the notification list the first as done, and name the INVALID index with
    the DROP to run before the resolve; run as printed, the index is gone and the history
    resolved."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (email text, name text)")
        conn.execute("INSERT INTO users VALUES ('a@x', 'ada'), ('b@x', 'ada')")
    write_migrations(
        project / "migrations",
        {
            "1_i": "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n"
            "CREATE UNIQUE INDEX CONCURRENTLY users_name_u ON users (name);"
        },
    )
    env = project_env(database_url, project, PREDEPLOY_NOTIFY_URLS=receiver.url())
    done = cli("migrate", "--env", "staging", "--yes", "--no-backup", "--json", env=env)
    assert done.returncode == 5, done.stderr
    runbook = json.loads(done.stdout)["runbook"]
    drop = '#   DROP INDEX CONCURRENTLY "public"."users_name_u";'
    resolve = next(line for line in commands(runbook) if " resolve " in line)
    assert runbook.index(drop) < runbook.index(resolve), runbook
    assert "#   CREATE INDEX CONCURRENTLY users_email_idx ON users (email)" in runbook
    (payload,) = receiver.payloads()
    assert drop in payload["event"]["runbook"], payload
    assert drop in payload["message"], payload["message"]

    with psycopg.connect(database_url, autocommit=True) as conn:  # in psql, as printed
        conn.execute(drop.removeprefix("#   "))
    pasted = subprocess.run(
        ["/bin/sh", "-c", resolve],
        cwd=project,
        env={k: v for k, v in os.environ.items() if k not in OUR_VARIABLES} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert pasted.returncode == 0, pasted.stderr
    assert query_value(database_url, _INVALID) == 0
    rows = "SELECT count(*) FROM _prisma_migrations WHERE rolled_back_at IS NOT NULL"
    assert query_value(database_url, rows) == 1
