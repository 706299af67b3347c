"""The real Prisma CLI agrees with a schema-per-tenant fleet run: on a sample of tenants,
`prisma migrate status` (schema=tN in the URL) says up to date, and `prisma migrate
deploy` finds nothing to apply."""

from __future__ import annotations

from pathlib import Path

from support.cli import Cli
from support.fleets import fleet_of, outcomes
from support.prisma import prisma_run
from support.servers import Server

NAMES = ("t1", "t2", "t3", "t4")


def test_prisma_agrees_with_a_schema_fleet(
    cli: Cli, pg_server: Server, project: Path, prisma: Path
) -> None:
    """Four schema tenants migrated by the fleet: Prisma sees t1 and t4 up to date."""
    with fleet_of(pg_server, project) as fleet:
        fleet.migrations(
            {
                "20260101000000_a": "CREATE TABLE a (id int PRIMARY KEY);",
                "20260102000000_b": "ALTER TABLE a ADD COLUMN note text;",
            }
        )
        fleet.toml("concurrency = 4", [f'name = "{n}"\nschema = "{n}"' for n in NAMES])
        done = cli("migrate", "--env", "staging", "--fleet", "--yes", "--json", env=fleet.env)
        assert done.returncode == 0, done.stderr
        assert set(outcomes(done).values()) == {"applied"}
        for name in ("t1", "t4"):
            url = f"{fleet.url(fleet.control)}?schema={name}"
            status = prisma_run(prisma, url, project / "migrations", "status")
            assert status.returncode == 0, status.stdout + status.stderr
            assert "up to date" in status.stdout, status.stdout
            deploy = prisma_run(prisma, url, project / "migrations", "deploy")
            assert deploy.returncode == 0, deploy.stdout + deploy.stderr
            assert "No pending migrations" in deploy.stdout, deploy.stdout
