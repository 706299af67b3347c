"""Drift on a real history: how long the check takes, and that it sees one hand-made change.

For PostgreSQL 15 (the system's, when present) and the embedded wheel's 18: the langfuse
history (tests/data/corpora/langfuse, 434 migrations) is applied with `predeploy migrate`,
then, in turns:

    fingerprint    the live schema's fingerprint alone (the catalogue queries)
    drift          `predeploy drift --env bench`, the whole run: a shadow database built
                   on the live server from the applied migrations (through the executor),
                   both fingerprinted and compared, the shadow dropped
    drift --expected  the same against a saved fingerprint (what a production box without
                   CREATEDB does): no shadow

and once after `ALTER TABLE projects ADD COLUMN by_hand text`: the run must exit 1 naming it.
Prints the medians. Not a test.
Run: python bench/drift.py [--repeat 5]
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
from cluster import ThrowawayCluster

from predeploy.drift import catalogue

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "corpora" / "langfuse" / "migrations"
SYSTEM_PG = Path("/usr/lib/postgresql/15/bin")
_OWN = [("public", "_prisma_migrations"), ("public", "predeploy_runs")]


def predeploy(project: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREDEPLOY_", "PG"))}
    env |= {"DATABASE_URL": url, "PREDEPLOY_MIGRATIONS_DIR": str(project / "migrations")}
    command = [sys.executable, "-m", "predeploy", *args, "--env", "bench"]
    return subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, check=False
    )


def timed(run: Callable[[], None], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def one_server(bin_dir: Path | None, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, ThrowawayCluster(bin_dir) as cluster:
        project = Path(tmp)
        shutil.copytree(CORPUS, project / "migrations")
        (project / ".env.bench").write_text("PREDEPLOY_LOG_DIR=logs\n")
        with psycopg.connect(cluster.admin_url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE langfuse")
            version = admin.info.server_version // 10000
        url = cluster.url("langfuse")
        done = predeploy(project, url, "migrate", "--yes", "--no-backup")
        if done.returncode != 0:
            raise SystemExit(f"migrate failed: {done.stderr.strip()}")
        saved = project / "expected.json"
        predeploy(project, url, "drift", "--save", str(saved))

        def take() -> None:
            with psycopg.connect(url) as conn:
                catalogue.take(conn, exclude=_OWN)

        def drift(*extra: str) -> None:
            done = predeploy(project, url, "drift", *extra)
            if done.returncode != 0:
                raise SystemExit(f"drift found on a clean database: {done.stderr.strip()}")

        fp = timed(take, repeat)
        shadow = timed(drift, repeat)
        expected = timed(lambda: drift("--expected", str(saved)), repeat)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER TABLE projects ADD COLUMN by_hand text")
        found = predeploy(project, url, "drift")
        named = "by_hand" in found.stdout + found.stderr
        print(
            f"PostgreSQL {version}: fingerprint {fp * 1000:.0f} ms; drift (shadow build + "
            f"compare, whole run) {shadow:.2f} s; drift --expected {expected:.2f} s; "
            f"hand-made column: exit {found.returncode}, {'named' if named else 'NOT NAMED'}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if (SYSTEM_PG / "initdb").exists():
        one_server(SYSTEM_PG, args.repeat)
    one_server(None, args.repeat)


if __name__ == "__main__":
    main()
