"""The real Prisma CLI agrees with predeploy, both ways (tests/data/tools/prisma-check.sh)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from predeploy.commands.status import current as current_status
from predeploy.errors import MigrationError
from support import migrating
from support.prisma import prisma_run
from support.project import MakeSettings, write_migrations
from support.servers import Server

SCRIPTS = {
    "20260101000000_init": 'CREATE TABLE "User" (id serial PRIMARY KEY, email text NOT NULL);',
    "20260102000000_index": 'CREATE INDEX CONCURRENTLY "User_email_idx" ON "User" (email);',
    "20260103000000_own_tx": 'BEGIN;\nALTER TABLE "User" ADD COLUMN name text;\nCOMMIT;\n',
}
HISTORY = (
    "SELECT migration_name, length(id), checksum, finished_at IS NOT NULL, logs, rolled_back_at,"
    " applied_steps_count FROM _prisma_migrations ORDER BY migration_name"
)


@pytest.mark.slow
def test_prisma_agrees_in_both_directions(
    prisma: Path,
    make_settings: MakeSettings,
    migrations_dir: Path,
    database_url: str,
    pg_server: Server,
) -> None:
    """After predeploy, Prisma says up to date; after Prisma, predeploy does; rows match."""
    write_migrations(migrations_dir, SCRIPTS)
    migrating.migrate(make_settings())
    status = prisma_run(prisma, database_url, migrations_dir, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Database schema is up to date!" in status.stdout

    theirs = f"{database_url}_prisma"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{theirs.rsplit("/", 1)[1]}"')
    deploy = prisma_run(prisma, theirs, migrations_dir, "deploy")
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert current_status(make_settings(DATABASE_URL=theirs)).up_to_date
    with psycopg.connect(database_url) as ours_conn, psycopg.connect(theirs) as theirs_conn:
        assert ours_conn.execute(HISTORY).fetchall() == theirs_conn.execute(HISTORY).fetchall()
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{theirs.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.mark.slow
def test_prisma_sees_our_failed_migration(
    prisma: Path, make_settings: MakeSettings, migrations_dir: Path, database_url: str
) -> None:
    """A migration predeploy left failed is failed for Prisma too."""
    write_migrations(
        migrations_dir,
        {
            "20260101000000_init": "CREATE TABLE t (a int);",
            "20260102000000_bad": "CREATE INDEX CONCURRENTLY t_a ON t (a);\n"
            "CREATE INDEX CONCURRENTLY t_b ON t (b);\n",
        },
    )
    with pytest.raises(MigrationError):
        migrating.migrate(make_settings())
    status = prisma_run(prisma, database_url, migrations_dir, "status")
    assert status.returncode == 1
    assert "20260102000000_bad" in status.stdout + status.stderr
    assert "failed" in (status.stdout + status.stderr).lower()
