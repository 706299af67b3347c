"""A fleet for the CLI tests: a role with a distinctive password, a control database (the
env's) and a database per tenant on the suite's server, a project folder with
predeploy.fleet.toml and migrations; the tenants' history read back."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from support.hazards import SMALL
from support.project import write_migrations
from support.servers import Server

__all__ = ["PASSWORD", "Fleet", "fleet_of", "outcomes"]

# distinctive, and every character a URL must percent-encode in it
PASSWORD = "Fl33tS3cr3t-q7Zx"


@dataclass
class Fleet:
    """The fleet's server, role, databases and project."""

    server: Server
    project: Path
    role: str
    control: str  # the env's database
    tenants: dict[str, str]  # tenant name -> its database
    extra_env: dict[str, str] = field(default_factory=dict)

    def url(self, database: str, *, port: int | None = None) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.server.admin_url)
        return (
            f"postgresql://{self.role}:{PASSWORD}@{info.get('host', '127.0.0.1')}:"
            f"{port or info.get('port', 5432)}/{database}"
        )

    def admin(self, database: str) -> str:
        """The superuser's URL of ``database`` (the test's own sessions)."""
        return self.server.url(database)

    @property
    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.url(self.control),
            "PREDEPLOY_MIGRATIONS_DIR": str(self.project / "migrations"),
            "PREDEPLOY_BACKUP_DIR": str(self.project / "backups"),
            "PREDEPLOY_LOG_DIR": str(self.project / "logs"),
            **SMALL,
            **self.extra_env,
        }

    def toml(self, head: str, targets: list[str] | None = None) -> None:
        """predeploy.fleet.toml: ``head`` ([fleet] lines), then a [[targets]] block each."""
        blocks = [f"[[targets]]\n{t}\n" for t in (targets or [])]
        (self.project / "predeploy.fleet.toml").write_text(
            "[fleet]\n" + head + "\n\n" + "\n".join(blocks)
        )

    def databases_toml(self, head: str, groups: dict[str, str] | None = None) -> None:
        """One [[targets]] per tenant, on its database (group from ``groups``)."""
        self.toml(
            head,
            [
                f'name = "{n}"\ndatabase = "{d}"'
                + (f'\ngroup = "{groups[n]}"' if groups and n in groups else "")
                for n, d in self.tenants.items()
            ],
        )

    def migrations(self, scripts: dict[str, str]) -> None:
        write_migrations(self.project / "migrations", scripts)

    def applied(self, database: str, schema: str = "public") -> list[str]:
        """The names of the migrations applied in ``database``'s history (in ``schema``)."""
        table = sql.Identifier(schema, "_prisma_migrations")
        with psycopg.connect(self.admin(database), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL",
                (f'"{schema}"._prisma_migrations',),
            ).fetchone()
            if not exists or not exists[0]:
                return []
            rows = conn.execute(
                sql.SQL(
                    "SELECT migration_name FROM {} WHERE finished_at IS NOT NULL"
                    " AND rolled_back_at IS NULL ORDER BY migration_name"
                ).format(table)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def sql(self, database: str, statement: str) -> None:
        with psycopg.connect(self.admin(database), autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]


@contextmanager
def fleet_of(server: Server, project: Path, *names: str) -> Iterator[Fleet]:
    """A role, a control database and a database per name in ``names``; dropped after."""
    tag = uuid.uuid4().hex[:8]
    role = f"fleet_{tag}"
    control = f"fc_{tag}"
    tenants = {n: f"ft_{tag}_{n}" for n in names}
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(PASSWORD)
            )
        )
        for database in (control, *tenants.values()):
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(database), sql.Identifier(role)
                )
            )
    (project / "migrations").mkdir(exist_ok=True)
    try:
        yield Fleet(server, project, role, control, tenants)
    finally:
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            for database in (control, *tenants.values()):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database)
                    )
                )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def outcomes(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """{target: outcome} of a fleet run's --json output."""
    data = json.loads(done.stdout)
    return {t["name"]: t["outcome"] for t in data["targets"]}
