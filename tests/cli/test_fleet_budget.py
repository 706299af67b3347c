"""A fleet where one tenant's migration fails: the failure budget decides what else runs;
the report, the JSON and the runbook name what changed where; a second run resumes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Cli
from support.fleets import Fleet, fleet_of, outcomes
from support.servers import Server

GOOD = {"1_a": "CREATE TABLE a (id int);", "2_b": "CREATE TABLE b (id int);"}


@pytest.fixture
def fleet(pg_server: Server, project: Path) -> Iterator[Fleet]:
    with fleet_of(pg_server, project, "t1", "t2", "t3", "t4") as made:
        made.migrations(GOOD)
        yield made


def break_tenant(fleet: Fleet, name: str) -> None:
    """Tenant ``name`` already has a table ``b``: its 2_b fails (42P07)."""
    fleet.sql(fleet.tenants[name], "CREATE TABLE b (id int)")


def test_max_fail_zero_stops_starting_and_names_what_changed(cli: Cli, fleet: Fleet) -> None:
    """max_fail = 0, one at a time: t2 fails, t1 applied, t3 and t4 never start; exit 5;
    the JSON, the lines and the runbook name t1's two migrations and t2's failure."""
    fleet.databases_toml("concurrency = 1\nmax_fail = 0")
    break_tenant(fleet, "t2")
    done = cli("migrate", "--env", "staging", "--fleet", "--yes", "--json", env=fleet.env)
    assert done.returncode == 5, done.stderr
    data = json.loads(done.stdout)
    by_name = {t["name"]: t for t in data["targets"]}
    assert outcomes(done) == {
        "t1": "applied", "t2": "failed", "t3": "not started", "t4": "not started"
    }  # fmt: skip
    assert by_name["t1"]["applied"] == ["1_a", "2_b"]
    assert by_name["t2"]["applied"] == ["1_a"]
    assert "2_b" in by_name["t2"]["error"] and "42P07" in by_name["t2"]["error"]
    assert by_name["t3"]["applied"] == [] and by_name["t3"]["error"] is None
    assert fleet.applied(fleet.tenants["t1"]) == ["1_a", "2_b"]
    assert fleet.applied(fleet.tenants["t2"]) == ["1_a"]
    assert fleet.applied(fleet.tenants["t3"]) == []
    runbook = Path(data["runbook_path"]).read_text()
    assert "--target t1" in runbook and "1_a" in runbook and "2_b" in runbook
    assert "# == t2" in runbook and "# == t3" not in runbook
    assert "max_fail = 0 was exceeded when t2 failed" in (data["stopped"] or "")


def test_max_fail_percent_lets_the_rest_run_then_resume(cli: Cli, fleet: Fleet) -> None:
    """max_fail = "50%": t2 fails, the three others apply, exit 5; once t2 is fixed, the
    same command says it resumes and runs t2 only, exit 0."""
    fleet.databases_toml('concurrency = 2\nmax_fail = "50%"')
    break_tenant(fleet, "t2")
    done = cli("migrate", "--env", "staging", "--fleet", "--yes", env=fleet.env)
    assert done.returncode == 5, done.stderr
    assert "t2" in done.stderr
    for name in ("t1", "t3", "t4"):
        assert fleet.applied(fleet.tenants[name]) == ["1_a", "2_b"]
    lines = done.stdout.splitlines()
    assert any(line.startswith("✗ t2") and "2_b" in line for line in lines), done.stdout
    fleet.sql(fleet.tenants["t2"], "DROP TABLE b")
    again = cli("migrate", "--env", "staging", "--fleet", "--yes", "--json", env=fleet.env)
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["resumed_from"] is not None
    assert outcomes(again) == {
        "t1": "skipped", "t2": "applied", "t3": "skipped", "t4": "skipped"
    }  # fmt: skip
    assert {t["name"]: t["applied"] for t in data["targets"]}["t2"] == ["2_b"]
    assert fleet.applied(fleet.tenants["t2"]) == ["1_a", "2_b"]


def test_in_flight_targets_finish_when_the_budget_is_spent(cli: Cli, fleet: Fleet) -> None:
    """max_fail = 0, two at once: t2 fails while t1's 2_b still runs (it sleeps 3 s there);
    t1 finishes and is applied, t3 and t4 never start."""
    (fleet.project / "migrations" / "2_b" / "migration.sql").write_text(
        "CREATE TABLE b (id int);\n"
        "SELECT pg_sleep(CASE WHEN current_database() LIKE '%\\_t1' THEN 3 ELSE 0 END);\n"
    )
    fleet.databases_toml("concurrency = 2\nmax_fail = 0")
    break_tenant(fleet, "t2")
    done = cli("migrate", "--env", "staging", "--fleet", "--yes", "--json", env=fleet.env)
    assert done.returncode == 5, done.stderr
    assert outcomes(done) == {
        "t1": "applied", "t2": "failed", "t3": "not started", "t4": "not started"
    }  # fmt: skip
    assert fleet.applied(fleet.tenants["t1"]) == ["1_a", "2_b"]
