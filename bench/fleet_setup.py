"""The fleet benchmark's tenants on one server: their migrations, databases, schemas, reset
and the check that a contender applied everything.

    tenant_000 ... tenant_199   a database per tenant (its tables in public)
    tenants                     one database holding the schema tenants tenant_s00 ...

Every tenant gets the same generated history (``history``): Prisma-style migrations, a
model table each (text id, a unique and a plain index, a foreign key to the model before)
and every fifth an ALTER of the tables before it (columns added, a default set, an index).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
from cluster import ThrowawayCluster
from psycopg import sql

SCHEMA_DATABASE = "tenants"


@dataclass(frozen=True)
class Tenant:
    """One tenant: its name in the fleet file, its database, its schema (None: public)."""

    name: str
    database: str
    schema: str | None = None

    def url(self, cluster: ThrowawayCluster, port: int) -> str:
        """predeploy's URL of the tenant through ``port`` (Prisma's ?schema= for a schema)."""
        url = cluster.url(self.database).replace(f":{cluster.port}/", f":{port}/")
        return f"{url}?schema={self.schema}" if self.schema else url

    def dbmate_url(self, cluster: ThrowawayCluster, port: int) -> str:
        """dbmate's: its search_path parameter (it creates the first schema if missing)."""
        url = cluster.url(self.database).replace(f":{cluster.port}/", f":{port}/")
        url = url.replace("postgresql://", "postgres://") + "?sslmode=disable"
        return f"{url}&search_path={self.schema}" if self.schema else url

    def toml(self) -> str:
        where = f'database = "{self.database}"'
        if self.schema:
            where = f'schema = "{self.schema}"'  # in the env's database (``tenants``)
        return f'[[targets]]\nname = "{self.name}"\n{where}\n'


def tenants(databases: int, schemas: int) -> list[Tenant]:
    """The databases' tenants, then the schemas'."""
    return [Tenant(f"d{i:03d}", f"tenant_{i:03d}") for i in range(databases)] + [
        Tenant(f"s{i:02d}", SCHEMA_DATABASE, f"tenant_s{i:02d}") for i in range(schemas)
    ]


def sample(every: list[Tenant], count: int) -> list[Tenant]:
    """``count`` of ``every``, databases and schemas in the fleet's proportion."""
    schemas = [t for t in every if t.schema]
    dbs = [t for t in every if not t.schema]
    take = round(count * len(schemas) / len(every))
    return dbs[: count - take] + schemas[:take]


def history(folder: Path, count: int) -> Path:
    """``count`` generated migrations in Prisma's layout under ``folder``."""
    for i in range(count):
        path = folder / f"2026120700{i:04d}_step_{i}" / "migration.sql"
        path.parent.mkdir(parents=True)
        path.write_text(_migration(i))
    return folder


def _migration(i: int) -> str:
    if i % 5 == 4:  # an ALTER of the two models before it
        a, b = f"Model{i - 1}", f"Model{i - 2}"
        return (
            f'-- AlterTable\nALTER TABLE "{a}" ADD COLUMN "archivedAt" TIMESTAMP(3),\n'
            f'ADD COLUMN "note" TEXT;\n\n-- AlterTable\nALTER TABLE "{b}" ALTER COLUMN '
            f"\"status\" SET DEFAULT 'active';\n\n-- CreateIndex\n"
            f'CREATE INDEX "{a}_archivedAt_idx" ON "{a}"("archivedAt");\n'
        )
    model = f"Model{i}"
    parent = None if i == 0 else f"Model{i - 1 if (i - 1) % 5 != 4 else i - 2}"
    text = (
        f'-- CreateTable\nCREATE TABLE "{model}" (\n    "id" TEXT NOT NULL,\n'
        f'    "tenantId" TEXT NOT NULL,\n    "name" TEXT NOT NULL,\n'
        f'    "status" TEXT NOT NULL DEFAULT \'new\',\n    "amount" DECIMAL(65,30),\n'
        f'    "parentId" TEXT,\n'
        f'    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,\n'
        f'    "updatedAt" TIMESTAMP(3) NOT NULL,\n\n'
        f'    CONSTRAINT "{model}_pkey" PRIMARY KEY ("id")\n);\n\n'
        f'-- CreateIndex\nCREATE UNIQUE INDEX "{model}_tenantId_name_key" ON "{model}"'
        f'("tenantId", "name");\n\n-- CreateIndex\nCREATE INDEX "{model}_createdAt_idx" '
        f'ON "{model}"("createdAt");\n'
    )
    if parent is not None:
        text += (
            f'\n-- AddForeignKey\nALTER TABLE "{model}" ADD CONSTRAINT "{model}_parentId_fkey" '
            f'FOREIGN KEY ("parentId") REFERENCES "{parent}"("id") ON DELETE SET NULL '
            f"ON UPDATE CASCADE;\n"
        )
    return text


def _each_database(cluster: ThrowawayCluster, every: Iterable[Tenant], do: Callable) -> None:
    """``do(conn, tenants of that database)`` on each database, four at a time (direct)."""
    by_database: dict[str, list[Tenant]] = {}
    for t in every:
        by_database.setdefault(t.database, []).append(t)

    def one(database: str) -> None:
        with psycopg.connect(cluster.url(database), autocommit=True) as conn:
            do(conn, by_database[database])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, by_database))


def create(cluster: ThrowawayCluster, every: list[Tenant]) -> None:
    """The tenants' databases (the schemas are the contenders' to create)."""
    with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
        for database in dict.fromkeys(t.database for t in every):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def reset(cluster: ThrowawayCluster, every: list[Tenant]) -> None:
    """Every tenant as before any contender: its schema gone (public: empty again)."""

    def clear(conn: psycopg.Connection, here: list[Tenant]) -> None:
        for t in here:
            if t.schema:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(t.schema))
                )
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")

    _each_database(cluster, every, clear)


def verify(cluster: ThrowawayCluster, every: list[Tenant], table: str, count: int) -> list[str]:
    """The tenants whose history ``table`` does not hold ``count`` rows (empty: all done)."""
    missing: list[str] = []

    def check(conn: psycopg.Connection, here: list[Tenant]) -> None:
        for t in here:
            name = sql.Identifier(t.schema or "public", table)
            try:
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()
            except psycopg.errors.UndefinedTable:
                row = (0,)
            if row is None or row[0] != count:
                missing.append(t.name)

    _each_database(cluster, every, check)
    return sorted(missing)
