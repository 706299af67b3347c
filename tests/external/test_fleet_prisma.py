"""A schema-per-tenant fleet migrated by predeploy, as the real Prisma CLI sees it: every
sampled tenant up to date, its history rows as Prisma writes them."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from support.cli import Cli
from support.prisma import prisma_run
from support.project import write_migrations

SCRIPTS = {
    "20260101000000_init": 'CREATE TABLE "User" (id serial PRIMARY KEY, email text NOT NULL);',
    "20260102000000_index": 'CREATE INDEX CONCURRENTLY "User_email_idx" ON "User" (email);',
    "20260103000000_post": 'ALTER TABLE "User" ADD COLUMN name text;',
}
TENANTS = [f"tenant_{i}" for i in range(6)]


@pytest.mark.slow
def test_prisma_agrees_with_a_schema_per_tenant_fleet(
    prisma: Path, cli: Cli, project: Path, database_url: str
) -> None:
    write_migrations(project / "prisma" / "migrations", SCRIPTS)
    (project / ".env.staging").write_text(f"DATABASE_URL={database_url}\n")
    targets = "".join(f'[[targets]]\nname = "{t}"\nschema = "{t}"\n\n' for t in TENANTS)
    (project / "predeploy.fleet.toml").write_text(f"[fleet]\nconcurrency = 3\n\n{targets}")

    ran = cli("migrate", "--env", "staging", "--fleet", "--yes", "--json")

    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)
    assert {t["name"]: t["outcome"] for t in report["targets"]} == dict.fromkeys(
        TENANTS, "applied"
    )
    with psycopg.connect(database_url) as conn:  # every tenant's history in its schema
        for tenant in TENANTS:
            rows = conn.execute(
                sql.SQL("SELECT migration_name FROM {}._prisma_migrations ORDER BY 1").format(
                    sql.Identifier(tenant)
                )
            ).fetchall()
            assert [r[0] for r in rows] == list(SCRIPTS)
    for tenant in (TENANTS[0], TENANTS[-1]):  # a sample, as Prisma sees it
        status = prisma_run(
            prisma, f"{database_url}?schema={tenant}", project / "prisma" / "migrations", "status"
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert "Database schema is up to date!" in status.stdout
