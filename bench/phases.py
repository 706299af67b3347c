"""Why deploy phases exist: failed requests while a release renames a column it reads.

Runs the scenario of tests/support/phases_scenario.py against a throwaway PostgreSQL and a
real pm2 (installed with npm into a temporary folder): the same rename deployed in two phases (add
the new column pre-deploy, drop the old one post-deploy) and as one pre-deploy migration,
each while a loop of requests runs against the app. Prints requests sent and failed.

    python bench/phases.py [--rounds N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cluster import ThrowawayCluster, free_port

from support import phases_scenario as scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory(prefix="predeploy-bench-phases-") as scratch:
        tools = Path(scratch) / "node"
        tools.mkdir()
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "pm2@7", "pg@8"],
            cwd=tools,
            check=True,
            capture_output=True,
        )
        with ThrowawayCluster() as cluster:
            results: dict[str, list[tuple[int, int]]] = {"two phases": [], "one phase": []}
            for n in range(rounds):
                for label, release in (
                    ("two phases", scenario.TWO_PHASES),
                    ("one phase", scenario.ONE_PHASE),
                ):
                    name = f"phases_{n}_{label.replace(' ', '_')}"
                    with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
                        conn.execute(f'CREATE DATABASE "{name}"')
                    project = Path(scratch) / name
                    project.mkdir()
                    with scenario.running_app(
                        project,
                        tools / "node_modules" / ".bin" / "pm2",
                        tools / "node_modules",
                        cluster.url(name),
                        free_port(),
                        Path(scratch) / f"{name}-pm2",
                    ) as (env, url):
                        load = scenario.deploy_under_load(project, env, url, release)
                    results[label].append((load.sent, load.failed))
    for label, runs in results.items():
        sent = sum(s for s, _ in runs)
        failed = sum(f for _, f in runs)
        print(
            f"{label:<11} {rounds} deploys: {sent} requests, {failed} failed "
            f"({100 * failed / max(sent, 1):.1f} %)"
        )


if __name__ == "__main__":
    main()
