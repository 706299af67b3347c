"""`predeploy backup` on a ~1 GB database against the bare tools runbooks use.

A throwaway cluster (the system's PostgreSQL 15 when present, else the embedded
wheel's) gets a pgbench database of about 1 GB (scale 70). Then, runners taking
turns in every round:

    pg_dump -Fc                 the bare tool: the floor for the tool's overhead
    predeploy backup               custom format, verification included (and its dump
                                phase alone, from the result's dump_seconds)
    predeploy backup, 2 jobs       directory format, PREDEPLOY_BACKUP_JOBS=2
    pg_dump | gzip              what runbooks do today

Prints median times, sizes and ratios. Run: python bench/backup.py [--scale 70] [--repeat 2]
[--data text]; text is four tables of random hex text instead of pgbench's blank-padded
rows, which compress ~50:1 and so dump in seconds.
[--data text] (text: four tables of random hex text instead of pgbench's blank-padded rows,
which compress ~50:1 and so dump in seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from cluster import ThrowawayCluster

SYSTEM_PG = Path("/usr/lib/postgresql/15/bin")


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--data",
        choices=("pgbench", "text"),
        default="pgbench",
        help="pgbench's rows (they compress ~50:1) or text: random hex text (~2:1)",
    )
    args = parser.parse_args()
    bin_dir = SYSTEM_PG if (SYSTEM_PG / "initdb").exists() else None
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp, ThrowawayCluster(bin_dir) as cluster:
        base = Path(tmp)
        out = base / "out"
        out.mkdir()
        url = cluster.url("bench")
        env = {**os.environ, "PGPASSWORD": cluster.password}
        with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        started = time.perf_counter()
        if args.data == "pgbench":
            pgbench = [str(cluster.bin_dir / "pgbench"), "-i", "-q", "-s", str(args.scale)]
            where = ["-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "bench"]
            subprocess.run([*pgbench, *where], env=env, check=True, capture_output=True)
        else:
            with psycopg.connect(url, autocommit=True) as conn:
                for part in range(4):  # four tables of random hex text
                    conn.execute(
                        f"CREATE TABLE notes_{part} AS SELECT g AS id,"
                        " md5(random()::text) || md5(random()::text) || md5(g::text) AS body"
                        f" FROM generate_series(1, {args.scale * 25_000}) g"
                    )
                    conn.execute(f"ALTER TABLE notes_{part} ADD PRIMARY KEY (id)")
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT pg_database_size('bench')").fetchone()
        db_size = int(row[0]) if row else 0
        print(
            f"{args.data} data, scale {args.scale}: {db_size / 1e9:.2f} GB in "
            f"{time.perf_counter() - started:.0f}s; PostgreSQL {cluster.bin_dir}"
        )
        project = base / "project"
        project.mkdir()
        (project / ".env.bench").write_text("")
        pg_dump = str(cluster.bin_dir / "pg_dump")
        conninfo = f"host=127.0.0.1 port={cluster.port} user=postgres dbname=bench"

        def bare() -> tuple[float, int, float]:
            target = out / "bare.dump"
            t = time.perf_counter()
            subprocess.run([pg_dump, "-Fc", "-f", str(target), conninfo], env=env, check=True)
            seconds = time.perf_counter() - t
            size = size_of(target)
            target.unlink()
            return seconds, size, seconds

        def gzip() -> tuple[float, int, float]:
            target = out / "bare.sql.gz"
            t = time.perf_counter()
            with target.open("wb") as sink:
                dump = subprocess.Popen([pg_dump, conninfo], env=env, stdout=subprocess.PIPE)
                subprocess.run(["gzip"], stdin=dump.stdout, stdout=sink, check=True)
                assert dump.wait() == 0
            seconds = time.perf_counter() - t
            size = size_of(target)
            target.unlink()
            return seconds, size, seconds

        def ours(jobs: int) -> tuple[float, int, float]:
            folder = out / f"ours{jobs}"
            run_env = {
                **os.environ,
                "DATABASE_URL": url,
                "PREDEPLOY_BACKUP_DIR": str(folder),
                "PREDEPLOY_BACKUP_JOBS": str(jobs),
                "PREDEPLOY_PG_BIN_DIR": str(cluster.bin_dir),
            }
            t = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "predeploy", "backup", "--env", "bench", "--json"],
                cwd=project,
                env=run_env,
                capture_output=True,
                text=True,
                check=True,
            )
            seconds = time.perf_counter() - t
            result = json.loads(done.stdout)
            shutil.rmtree(folder)
            return seconds, int(result["size"]), float(result["dump_seconds"])

        runners = {
            "pg_dump -Fc (bare)": bare,
            "predeploy backup (custom, verified)": lambda: ours(1),
            "predeploy backup (directory, 2 jobs)": lambda: ours(2),
            "pg_dump | gzip": gzip,
        }
        samples: dict[str, list[tuple[float, int, float]]] = {name: [] for name in runners}
        for _ in range(args.repeat):
            for name, runner in runners.items():
                samples[name].append(runner())
        medians = {n: statistics.median(s[0] for s in v) for n, v in samples.items()}
        sizes = {n: v[-1][1] for n, v in samples.items()}
        floor = medians["pg_dump -Fc (bare)"]
        for name in runners:
            print(
                f"{name:<38} {medians[name]:7.1f} s  {medians[name] / floor:5.2f}x bare  "
                f"{sizes[name] / 1e6:8.1f} MB   runs: "
                + " ".join(f"{s[0]:.1f}" for s in samples[name])
            )
        dump_only = statistics.median(s[2] for s in samples["predeploy backup (custom, verified)"])
        print(f"{'  its dump phase alone':<38} {dump_only:7.1f} s  {dump_only / floor:5.2f}x bare")
        gz = medians["pg_dump | gzip"]
        two = medians["predeploy backup (directory, 2 jobs)"]
        print(
            f"directory/2 jobs against pg_dump | gzip: {two / gz:.2f}x the time, "
            f"{sizes['predeploy backup (directory, 2 jobs)'] / sizes['pg_dump | gzip']:.2f}x "
            f"the size"
        )


if __name__ == "__main__":
    main()
