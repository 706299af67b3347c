"""`SET search_path` inside a migration changes nothing about the
bookkeeping. The history row goes to the history table's own schema, later migrations
run with the session's search_path, and a failure of the bookkeeping is reported as
such, never at a line of the user's SQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from support.cli import Cli
from support.hazards import one_line, project_env, query_value
from support.project import write_migrations


def schema_of(url: str, relation: str) -> object:
    return query_value(
        url,
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relname = %s",
        relation,
    )


def test_set_search_path_in_a_migration_changes_no_bookkeeping(
    cli: Cli, database_url: str, project: Path
) -> None:
    """A migration (in a transaction, and one outside) that sets search_path: every row is in
    public._prisma_migrations, the next migration's table lands in public, status is clean
    afterwards, and a rollback whose down.sql sets it marks the right row."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA elsewhere")
    migrations = project / "migrations"
    write_migrations(
        migrations,
        {
            "1_there": "SET search_path TO elsewhere;\nCREATE TABLE t (id int);\n",
            "2_concurrently": "SET search_path TO elsewhere;\n"
            "CREATE INDEX CONCURRENTLY t_id ON t (id);\n",
            "3_here": "CREATE TABLE u (id int);\n",
        },
    )
    (migrations / "3_here" / "down.sql").write_text(
        "SET search_path TO elsewhere;\nDROP TABLE public.u;\n"
    )
    env = project_env(database_url, project)
    done = cli("migrate", "--env", "staging", "--yes", "--no-backup", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert [a["name"] for a in json.loads(done.stdout)["applied"]] == [
        "1_there",
        "2_concurrently",
        "3_here",
    ]
    assert schema_of(database_url, "t") == "elsewhere"
    assert schema_of(database_url, "t_id") == "elsewhere"
    assert schema_of(database_url, "u") == "public"
    assert query_value(database_url, "SELECT to_regclass('elsewhere._prisma_migrations')") is None
    rows = query_value(
        database_url,
        "SELECT array_agg(migration_name ORDER BY migration_name) FROM public._prisma_migrations"
        " WHERE finished_at IS NOT NULL",
    )
    assert rows == ["1_there", "2_concurrently", "3_here"]
    status = cli("status", "--env", "staging", "--check", env=env)
    assert status.returncode == 0, status.stderr
    undone = cli("rollback", "--env", "staging", "--steps", "1", "--yes", env=env)
    assert undone.returncode == 0, undone.stderr
    assert query_value(database_url, "SELECT to_regclass('public.u')") is None
    assert query_value(
        database_url,
        "SELECT rolled_back_at IS NOT NULL FROM public._prisma_migrations"
        " WHERE migration_name = '3_here'",
    )


def test_failed_bookkeeping_is_not_blamed_on_the_users_sql(
    cli: Cli, database_url: str, project: Path
) -> None:
    """A migration whose SQL succeeds but whose history row cannot be written: exit 5 naming
    the history table and SQLSTATE, no line of migration.sql blamed, everything rolled back."""
    write_migrations(project / "migrations", {"1_a": "CREATE TABLE early (id int);"})
    env = project_env(database_url, project)
    assert cli("migrate", "--env", "staging", "--yes", "--no-backup", env=env).returncode == 0
    write_migrations(
        project / "migrations",
        {
            "2_sabotage": "CREATE TABLE b (id int);\nALTER TABLE public._prisma_migrations"
            " ADD CONSTRAINT no_more CHECK (migration_name < '2');\n"
        },
    )
    done = cli("migrate", "--env", "staging", "--yes", "--no-backup", env=env)
    line = one_line(done)
    assert done.returncode == 5, done.stderr
    assert "recording it in public._prisma_migrations failed [23514]" in line, line
    assert " at line " not in line, line
    assert query_value(database_url, "SELECT to_regclass('b')") is None
