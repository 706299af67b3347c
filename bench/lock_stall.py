"""Application stalls behind a migration's lock: `psql -f` against `predeploy migrate`.

A load of short queries runs throughout: --clients connections, each alternating a
primary-key SELECT and UPDATE on `accounts` (100,000 rows). At 4 s a reporting
transaction reads `accounts` and stays open, idle in transaction, holding its
ACCESS SHARE lock for --hold seconds (20). At 5 s a migration altering `accounts`
(ADD COLUMN with a default: an ACCESS EXCLUSIVE lock, instant once granted) is applied:

    psql          psql -1 -v ON_ERROR_STOP=1 -f migration.sql, as runbooks do
    predeploy     predeploy migrate --env bench --yes (PREDEPLOY_LOCK_TIMEOUT 2s, the default): the
                  runner's lock_timeout, then it waits for the holder to go
    predeploy-prod predeploy migrate --env prod --yes --no-backup --allow-drift (the bench
                  makes its table by hand): the blocker scan sees the
                  idle transaction and waits (PREDEPLOY_BLOCKER_WAIT 60s) before touching the table

For each: the longest any client query took (its stall), the throughput lost (the
time the clients spent waiting for locks, per client: seconds of full throughput,
and as queries at the rate measured from 1 s to 4 s), and when the migration
finished relative to the blocker's release.
Run: python bench/lock_stall.py [--hold 20] [--clients 4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from cluster import ThrowawayCluster

SYSTEM_PG = Path("/usr/lib/postgresql/15/bin")
MIGRATION = "ALTER TABLE accounts ADD COLUMN note text NOT NULL DEFAULT '';\n"
BLOCKER_AT, MIGRATION_AT, WARMUP = 4.0, 5.0, 1.0
STALLED = 0.1  # a query slower than this waited for a lock (they take ~0.2 ms otherwise)


@dataclass
class Load:
    """Client threads recording (start, latency) of every query."""

    url: str
    clients: int
    stop: threading.Event = field(default_factory=threading.Event)
    samples: list[tuple[float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, seed: int) -> None:
        mine: list[tuple[float, float]] = []
        with psycopg.connect(self.url, autocommit=True, application_name="app") as conn:
            key = seed
            while not self.stop.is_set():
                key = key * 1103515245 + 12345 & 0x7FFFFFFF
                account = key % 100_000 + 1
                for sql in (
                    "SELECT balance FROM accounts WHERE id = %s",
                    "UPDATE accounts SET balance = balance + 1 WHERE id = %s",
                ):
                    started = time.monotonic()
                    conn.execute(sql, (account,))
                    mine.append((started, time.monotonic() - started))
        with self.lock:
            self.samples += mine


@dataclass(frozen=True)
class Outcome:
    name: str
    longest_stall: float
    stalled_while_held: float  # longest of the queries started while the blocker held
    lost_queries: float
    lost_seconds: float
    finished_after_release: float  # migration end minus blocker release
    applied: bool


def prepare(cluster: ThrowawayCluster, name: str) -> str:
    with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = cluster.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE accounts AS SELECT g AS id, 0::bigint AS balance"
            " FROM generate_series(1, 100000) g"
        )
        conn.execute("ALTER TABLE accounts ADD PRIMARY KEY (id)")
        conn.execute("VACUUM ANALYZE accounts")
    return url


def one_run(
    name: str,
    url: str,
    *,
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    args: argparse.Namespace,
) -> Outcome:
    load = Load(url, args.clients)
    threads = [threading.Thread(target=load.run, args=(i + 1,)) for i in range(args.clients)]
    t0 = time.monotonic()
    for thread in threads:
        thread.start()
    held = threading.Event()
    released = [0.0]

    def blocker() -> None:
        with psycopg.connect(url, application_name="reporting") as conn:
            conn.execute("SELECT count(*) FROM accounts")  # ACCESS SHARE until COMMIT
            held.set()
            time.sleep(args.hold)
            conn.commit()
            released[0] = time.monotonic()

    time.sleep(BLOCKER_AT)
    holder = threading.Thread(target=blocker)
    holder.start()
    held.wait()
    time.sleep(MIGRATION_AT - BLOCKER_AT)
    migration_start = time.monotonic()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    migration_end = time.monotonic()
    holder.join()
    time.sleep(1.0)
    window_end = time.monotonic()
    load.stop.set()
    for thread in threads:
        thread.join()
    if done.returncode != 0:
        print(f"  {name}: exit {done.returncode}: {done.stderr.strip()[-500:]}", flush=True)

    samples = sorted(load.samples)
    baseline = [s for s in samples if t0 + WARMUP <= s[0] < t0 + BLOCKER_AT]
    rate = len(baseline) / (BLOCKER_AT - WARMUP)
    # throughput lost: the time clients spent waiting for locks, over all clients, at the
    # baseline rate (robust against the load's own drift over the window)
    waited = sum(lat for start, lat in samples if lat > STALLED and start < window_end)
    lost_seconds = waited / args.clients
    while_held = [lat for start, lat in samples if migration_start <= start < released[0]]
    return Outcome(
        name=name,
        longest_stall=max(lat for _, lat in samples),
        stalled_while_held=max(while_held, default=0.0),
        lost_queries=lost_seconds * rate,
        lost_seconds=lost_seconds,
        finished_after_release=migration_end - released[0],
        applied=done.returncode == 0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=20.0, help="seconds the blocker holds")
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    bin_dir = SYSTEM_PG if (SYSTEM_PG / "initdb").exists() else None
    with tempfile.TemporaryDirectory() as tmp, ThrowawayCluster(bin_dir) as cluster:
        base = Path(tmp)
        migrations = base / "migrations" / "20261125000000_add_note"
        migrations.mkdir(parents=True)
        (migrations / "migration.sql").write_text(MIGRATION)
        for env_file in (".env.bench", ".env.prod"):
            (base / env_file).write_text("PREDEPLOY_LOG_DIR=logs\nPREDEPLOY_ALLOW_NO_BACKUP=1\n")
        version = psycopg.connect(cluster.admin_url).info.server_version // 10000
        print(
            f"PostgreSQL {version}, {args.clients} clients, blocker holds ACCESS SHARE "
            f"{args.hold:g}s; migration: {MIGRATION.strip()}",
            flush=True,
        )
        ours = [sys.executable, "-m", "predeploy", "migrate", "--yes"]
        runs = {
            "psql -f": [
                str(cluster.bin_dir / "psql"),
                "-X",
                "-q",
                "-1",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                str(migrations / "migration.sql"),
            ],
            "predeploy migrate (bench)": [*ours, "--env", "bench"],
            "predeploy migrate (prod)": [*ours, "--env", "prod", "--no-backup", "--allow-drift"],
        }
        outcomes = []
        for index, (name, command) in enumerate(runs.items()):
            url = prepare(cluster, f"stall_{index}")
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "PREDEPLOY_MIGRATIONS_DIR": str(base / "migrations"),
                "PGPASSWORD": cluster.password,
                "PGHOST": "127.0.0.1",
                "PGPORT": str(cluster.port),
                "PGUSER": "postgres",
                "PGDATABASE": f"stall_{index}",
            }
            outcomes.append(one_run(name, url, command=command, env=env, cwd=base, args=args))
        report(outcomes)


def report(outcomes: list[Outcome]) -> None:
    psql = outcomes[0]
    print(
        f"{'run':<24} {'longest stall':>14} {'while held':>11} {'queries lost':>13} "
        f"{'(seconds)':>10} {'done after release':>19}"
    )
    for o in outcomes:
        ratio = psql.longest_stall / o.longest_stall if o.longest_stall else float("inf")
        lost = (
            f"{psql.lost_queries / o.lost_queries:.1f}x fewer lost"
            if o.lost_queries
            else "none lost"
        )
        print(
            f"{o.name:<24} {o.longest_stall:>13.2f}s {o.stalled_while_held:>10.2f}s "
            f"{o.lost_queries:>13,.0f} {o.lost_seconds:>9.1f}s {o.finished_after_release:>18.2f}s"
            + ("" if o is psql else f"   stall {ratio:.0f}x shorter, {lost}")
            + ("" if o.applied else "   NOT APPLIED")
        )


if __name__ == "__main__":
    main()
