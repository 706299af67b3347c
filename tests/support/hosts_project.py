"""A project whose prod env deploys to the app hosts of support/ssh_hosts.py: `.env.prod`
(the suite's fresh database), migrations on disk (one pre-deploy, one post-deploy, each
with its down.sql) and `predeploy.fleet.toml` holding the `[deploy]` table and the
`[[hosts]]`, driven through `predeploy ...` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from support.cli import run_invoke
from support.environ import clean_environ
from support.ssh_hosts import HostSite

__all__ = ["POST", "PRE", "HostsProject", "hosts_project", "outcomes", "reported_pids"]

PRE = "1_users"  # a pre-deploy migration: applied once, before the first wave
POST = "2_notes"  # a post-deploy migration: after the last wave
_MIGRATIONS = {
    PRE: ("CREATE TABLE users (id int);\n", "DROP TABLE users;\n"),
    POST: (
        "-- predeploy: post-deploy\nCREATE TABLE notes (id int);\n",
        "DROP TABLE notes;\n",
    ),
}
RUN_TIMEOUT = 240.0


@dataclass
class HostsProject:
    project: Path
    database_url: str
    site: HostSite
    env: dict[str, str]  # the process environment beyond the clean one

    def write_fleet(self, site: HostSite | None = None, **deploy: Any) -> None:
        """predeploy.fleet.toml: ``site``'s (default: this one's) hosts, ``[deploy]`` keys."""
        (self.project / "predeploy.fleet.toml").write_text((site or self.site).toml(**deploy))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_invoke(self.project, *args, env=self.env, timeout=RUN_TIMEOUT)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """`predeploy ARGS` started in its own session (for a test that signals it)."""
        return subprocess.Popen(
            [sys.executable, "-m", "predeploy", *args],
            cwd=self.project,
            env=clean_environ(**self.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def deploy(self, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        """`predeploy deploy --env prod --yes --json EXTRA`: the run and its JSON report."""
        done = self.run("deploy", "--env", "prod", "--yes", "--json", *extra)
        assert done.stdout.strip(), f"exit {done.returncode}, no JSON: {done.stderr}"
        return done, json.loads(done.stdout)

    def history(self) -> list[tuple[str, datetime, datetime | None]]:
        """Every history row: (name, started_at, finished_at), oldest first."""
        with psycopg.connect(self.database_url) as conn:
            exists = conn.execute("SELECT to_regclass('_prisma_migrations')").fetchone()
            if exists is None or exists[0] is None:
                return []
            return conn.execute(
                "SELECT migration_name, started_at, finished_at FROM _prisma_migrations"
                " WHERE rolled_back_at IS NULL ORDER BY started_at"
            ).fetchall()

    def applied(self) -> list[str]:
        return [name for name, _started, finished in self.history() if finished is not None]


def hosts_project(project: Path, database_url: str, site: HostSite, **deploy: Any) -> HostsProject:
    """``project`` set up to deploy its prod env to ``site``'s hosts."""
    for name, (up, down) in _MIGRATIONS.items():
        folder = project / "migrations" / name
        folder.mkdir(parents=True)
        (folder / "migration.sql").write_text(up)
        (folder / "down.sql").write_text(down)
    settings = {
        "DATABASE_URL": database_url,
        "PREDEPLOY_DEPLOY_WAIT": "8s",  # a host's health gate
        "PREDEPLOY_HEALTHCHECK_RETRIES": "1",
        "PREDEPLOY_CONNECT_TIMEOUT": "5s",
    }
    (project / ".env.prod").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    made = HostsProject(project, database_url, site, {})
    made.write_fleet(**deploy)
    return made


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    """{host: outcome} of a deploy's JSON (issue 25: `hosts: [{name, outcome, pids}]`)."""
    assert "hosts" in report, f"no 'hosts' in the JSON report: {sorted(report)}"
    return {h["name"]: h["outcome"] for h in report["hosts"]}


def reported_pids(report: dict[str, Any]) -> dict[str, set[int]]:
    return {h["name"]: {int(p) for p in h["pids"]} for h in report["hosts"]}
