"""The benchmark's migrations, in the layout each runner reads.

    prisma/      predeploy's (Prisma's): <name>/migration.sql
    floor.sql    one psql session: each transactional file in BEGIN/COMMIT with a history
                 INSERT; a file that cannot run in a transaction (CONCURRENTLY, its own
                 BEGIN/COMMIT) as it is, then its INSERT
    dbmate/      <version>_<name>.sql with `-- migrate:up` (transaction:false where needed)
    yoyo/        <version>_<name>.sql (`-- transactional: false` where needed)

dbmate keys on the version number and yoyo orders by file name, so both get a sequence
number in the folders' byte order (langfuse has folders that share one timestamp). Which
files cannot run in a transaction is pglast's answer, the one predeploy uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from predeploy.migrate import discovery

HISTORY_DDL = """CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, checksum varchar(64)
NOT NULL, finished_at timestamptz, migration_name varchar(255) NOT NULL, logs text,
rolled_back_at timestamptz, started_at timestamptz NOT NULL DEFAULT now(),
applied_steps_count integer NOT NULL DEFAULT 0);
"""
_TAIL = re.compile(r"(\s|--[^\n]*)*\Z")


@dataclass(frozen=True)
class Corpus:
    """One set of migrations in every runner's layout."""

    label: str
    count: int
    prisma: Path
    floor: Path
    dbmate: Path
    yoyo: Path


def generated_sql(i: int) -> str:
    """Migration ``i`` of the generated corpus: a table with a primary key and an index."""
    return (
        f"CREATE TABLE bench_{i} (id bigint PRIMARY KEY, name text NOT NULL, created_at "
        f"timestamptz NOT NULL DEFAULT now());\nCREATE INDEX bench_{i}_name ON bench_{i} (name);\n"
    )


def generate(base: Path, count: int) -> Path:
    """``count`` generated migrations in Prisma's layout under ``base``."""
    folder = base / "generated"
    for i in range(count):
        (folder / f"2026{i:010d}_bench_{i}").mkdir(parents=True)
        (folder / f"2026{i:010d}_bench_{i}" / "migration.sql").write_text(generated_sql(i))
    return folder


def layouts(label: str, prisma: Path, base: Path) -> Corpus:
    """The migrations of ``prisma`` (Prisma's layout) for the floor, dbmate and yoyo."""
    found = discovery.discover(prisma)
    dbmate, yoyo = base / "dbmate", base / "yoyo"
    dbmate.mkdir(parents=True)
    yoyo.mkdir()
    floor = base / "floor.sql"
    with floor.open("w") as out:
        out.write(HISTORY_DDL)
        for number, migration in enumerate(found, start=1):
            out.write(_floor_lines(migration))
            text = migration.text
            stem = f"{number:06d}_{re.sub(r'[^A-Za-z0-9_]', '_', migration.name)}"
            transactional = migration.parsed.transactional
            up = "-- migrate:up" + ("" if transactional else " transaction:false")
            (dbmate / f"{stem}.sql").write_text(f"{up}\n{text}\n\n-- migrate:down\n")
            header = "" if transactional else "-- transactional: false\n"
            (yoyo / f"{stem}.sql").write_text(header + text)
    return Corpus(label, len(found), prisma, floor, dbmate, yoyo)


def _floor_lines(migration: discovery.Migration) -> str:
    """psql lines for one migration: the file (ended with ';' when it is not), its row."""
    path = str(migration.sql_path).replace("'", "''")
    name = migration.name.replace("'", "''")
    end = "" if _TAIL.sub("", migration.text).endswith(";") else ";\n"
    insert = (
        "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name,"
        f" started_at, applied_steps_count) VALUES (gen_random_uuid()::text,"
        f" '{migration.checksum}', now(), '{name}', now(), 1);\n"
    )
    if migration.parsed.transactional:
        return f"BEGIN;\n\\i '{path}'\n{end}{insert}COMMIT;\n"
    return f"\\i '{path}'\n{end}{insert}"
