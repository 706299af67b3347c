"""`migrate --fleet --dry-run`: each target says what it would apply (never "up to date"
while it has pending migrations), nothing is asked or applied, and the last real run's
resume state is left as it was."""

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
    with fleet_of(pg_server, project, "t1", "t2") as made:
        made.migrations(GOOD)
        yield made


def test_a_dry_run_says_what_each_target_would_apply(cli: Cli, fleet: Fleet) -> None:
    fleet.databases_toml("concurrency = 2")
    first = cli("migrate", "--env", "staging", "--fleet", "--yes", "--only", "t1", env=fleet.env)
    assert first.returncode == 0, first.stderr
    state = sorted((fleet.project / "logs").glob("fleet-*.json"))
    kept = [p.read_text() for p in state]

    dry = cli("migrate", "--env", "staging", "--fleet", "--dry-run", "--json", env=fleet.env)

    assert dry.returncode == 0, dry.stderr  # staging asks for a confirmation: not a dry run
    assert outcomes(dry) == {"t1": "up to date", "t2": "would apply"}
    t2 = next(t for t in json.loads(dry.stdout)["targets"] if t["name"] == "t2")
    assert t2["pending"] == ["1_a", "2_b"] and t2["applied"] == []
    assert fleet.applied(fleet.tenants["t2"]) == []
    assert [p.read_text() for p in state] == kept  # the real run's resume state untouched
