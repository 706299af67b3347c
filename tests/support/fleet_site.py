"""A project with a fleet of tenants (a database each, on the suite's server) and the
migrations on disk, driven through `predeploy ... --fleet` as a user would."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from support.cli import run_invoke
from support.servers import Server

__all__ = ["FleetSite", "fleet_site"]

HISTORY = "_prisma_migrations"


@dataclass
class FleetSite:
    project: Path
    env_url: str  # the env's own database (DATABASE_URL)
    urls: dict[str, str]  # tenant name -> its database's URL
    env: dict[str, str] = field(default_factory=dict)  # more of the process environment

    @property
    def migrations(self) -> Path:
        return self.project / "migrations"

    def write(self, name: str, script: str, down: str | None = None) -> None:
        folder = self.migrations / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "migration.sql").write_text(script)
        if down is not None:
            (folder / "down.sql").write_text(down)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_invoke(self.project, *args, env={**self.env, **env})

    def migrate(self, only: str) -> None:
        """`predeploy migrate --fleet --only ONLY --yes`, which must succeed."""
        done = self.run("migrate", "--env", "staging", "--fleet", "--only", only, "--yes")
        assert done.returncode == 0, done.stderr

    def fleet(self, verb: str, *args: str, **env: str) -> tuple[int, dict[str, Any]]:
        """`predeploy VERB --env staging --fleet --json ARGS`: its exit code and JSON."""
        done = self.run(verb, "--env", "staging", "--fleet", "--json", *args, **env)
        assert done.stdout.strip(), done.stderr
        return done.returncode, json.loads(done.stdout)

    def execute(self, tenant: str, statement: str) -> None:
        with psycopg.connect(self.urls[tenant], autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type] (the tests' own SQL)

    def applied(self, tenant: str) -> list[str]:
        """The tenant's applied migrations (not rolled back), in name order."""
        with psycopg.connect(self.urls[tenant]) as conn:
            exists = conn.execute("SELECT to_regclass(%s)", (HISTORY,)).fetchone()
            if exists is None or exists[0] is None:
                return []
            rows = conn.execute(
                sql.SQL(
                    "SELECT migration_name FROM {} WHERE finished_at IS NOT NULL"
                    " AND rolled_back_at IS NULL ORDER BY migration_name"
                ).format(sql.Identifier(HISTORY))
            ).fetchall()
        return [name for (name,) in rows]


def outcomes(data: dict[str, Any]) -> dict[str, str]:
    """{target: outcome} of a fleet run's JSON."""
    return {t["name"]: t["outcome"] for t in data["targets"]}


@contextmanager
def fleet_site(
    server: Server,
    project: Path,
    names: tuple[str, ...],
    *,
    fleet: str = "",
    groups: dict[str, str] | None = None,
    more: str = "",
) -> Iterator[FleetSite]:
    """``project`` with a database per tenant in ``names`` (targets by ``database``, in
    ``groups`` or the default one; ``fleet``: the [fleet] table's lines; ``more``: more
    [[targets]]), all dropped afterwards."""
    prefix = f"f4_{uuid.uuid4().hex[:8]}"
    databases = {name: f"{prefix}_{name}" for name in ("env", *names)}
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        for database in databases.values():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        (project / "migrations").mkdir()
        (project / ".env.staging").write_text(f"DATABASE_URL={server.url(databases['env'])}\n")
        targets = "".join(
            f'\n[[targets]]\nname = "{n}"\ndatabase = "{databases[n]}"\n'
            + (f'group = "{groups[n]}"\n' if groups and n in groups else "")
            for n in names
        )
        (project / "predeploy.fleet.toml").write_text(f"[fleet]\n{fleet}\n{targets}{more}")
        urls = {n: server.url(databases[n]) for n in names}
        yield FleetSite(project, server.url(databases["env"]), urls)
    finally:
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            for database in databases.values():
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database)
                    )
                )
