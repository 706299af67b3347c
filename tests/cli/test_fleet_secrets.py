"""The fleet's passwords (in the env's URL and in url_var URLs, one of them unreachable)
appear nowhere: not on stdout or stderr, not in the log, the runbook, the fleet's state
file or the backups' manifests, not in any tenant's audit rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from support.cli import Cli
from support.cluster import free_port
from support.fleets import PASSWORD, Fleet, fleet_of
from support.hazards import files_holding
from support.servers import Server


@pytest.fixture
def fleet(pg_server: Server, project: Path) -> Iterator[Fleet]:
    with fleet_of(pg_server, project, "t1", "t2", "t3", "t4") as made:
        made.migrations({"1_a": "CREATE TABLE a (id int);", "2_b": "CREATE TABLE b (id int);"})
        made.sql(made.tenants["t4"], "CREATE TABLE b (id int)")  # t4's 2_b fails
        made.extra_env = {
            "T2_URL": made.url(made.tenants["t2"]),
            "T3_URL": made.url(made.tenants["t3"], port=free_port()),
        }
        made.toml(
            'concurrency = 2\nmax_fail = "100%"',
            [
                f'name = "t1"\ndatabase = "{made.tenants["t1"]}"',
                'name = "t2"\nurl_var = "T2_URL"',
                'name = "t3"\nurl_var = "T3_URL"',
                f'name = "t4"\ndatabase = "{made.tenants["t4"]}"',
            ],
        )
        yield made


def test_no_password_anywhere(cli: Cli, fleet: Fleet) -> None:
    """migrate (text and JSON, -v) and status over the fleet, then every output and file."""
    runs = [
        cli("migrate", "--env", "staging", "--fleet", "--yes", "-v", env=fleet.env),
        cli("migrate", "--env", "staging", "--fleet", "--yes", "--json", env=fleet.env),
        cli("status", "--env", "staging", "--fleet", "--json", env=fleet.env),
        cli("status", "--env", "staging", "--fleet", env=fleet.env),
    ]
    assert runs[0].returncode != 0  # t3 unreachable, t4 failed: the errors were printed
    assert "t3" in runs[0].stdout + runs[0].stderr
    for done in runs:
        assert PASSWORD not in done.stdout and PASSWORD not in done.stderr
        assert "Traceback" not in done.stderr
    assert list((fleet.project / "logs").glob("runbook-*")), "a runbook was kept"
    assert list((fleet.project / "logs").glob("fleet-staging-migrate.json"))
    assert files_holding(fleet.project, PASSWORD) == []
    for name in ("t1", "t2", "t4"):
        with psycopg.connect(fleet.admin(fleet.tenants[name]), autocommit=True) as conn:
            rows = conn.execute("SELECT r::text FROM predeploy_runs r").fetchall()
        assert rows, f"{name} has audit rows"
        assert not any(PASSWORD in row[0] for row in rows)
