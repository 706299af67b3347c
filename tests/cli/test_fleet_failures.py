"""A fleet where one tenant is held by a lock holder, one is unreachable, or the canary
fails: that tenant is named, the others run (or, after a canary, never start), the exit
code is the failure's; the same command run again retries only what was left."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Cli
from support.cluster import free_port
from support.fleets import Fleet, fleet_of, outcomes
from support.hazards import holding
from support.servers import Server

GOOD = {"1_a": "CREATE TABLE a (id int);"}


@pytest.fixture
def fleet(pg_server: Server, project: Path) -> Iterator[Fleet]:
    with fleet_of(pg_server, project, "t1", "t2", "t3") as made:
        made.migrations(GOOD)
        yield made


def migrate(cli: Cli, fleet: Fleet, *more: str) -> tuple[int, dict[str, str], dict]:  # type: ignore[type-arg]
    done = cli("migrate", "--env", "staging", "--fleet", "--yes", "--json", *more, env=fleet.env)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, outcomes(done), json.loads(done.stdout)


def test_lock_holder_fails_its_tenant_with_6_then_resume(cli: Cli, fleet: Fleet) -> None:
    """A session holding Prisma's advisory lock in t2: t2 fails with exit 6 naming the
    holder; t1 and t3 apply. Once it lets go, the same command runs t2 only."""
    fleet.databases_toml('concurrency = 3\nmax_fail = "100%"')
    with holding(fleet.admin(fleet.tenants["t2"]), "SELECT pg_advisory_lock(72707369)") as pid:
        code, found, data = migrate(cli, fleet)
    assert code == 6, data
    assert found == {"t1": "applied", "t2": "failed", "t3": "applied"}
    (t2,) = [t for t in data["targets"] if t["name"] == "t2"]
    assert t2["exit_code"] == 6 and str(pid) in t2["error"], t2
    assert fleet.applied(fleet.tenants["t2"]) == []
    code, found, data = migrate(cli, fleet)
    assert code == 0, data
    assert data["resumed_from"] is not None
    assert found == {"t1": "skipped", "t2": "applied", "t3": "skipped"}
    assert fleet.applied(fleet.tenants["t2"]) == ["1_a"]


def test_unreachable_tenant_is_named_with_3(cli: Cli, fleet: Fleet) -> None:
    """t2's URL (url_var) points at a port nobody listens on, t3's at a database that does
    not exist: each named in one line; exit 3 (the only kind of failure); the others apply.
    """
    port = free_port()
    fleet.extra_env = {
        "T2_URL": fleet.url(fleet.tenants["t2"], port=port),
        "T3_URL": fleet.url("no_such_database_f3"),
    }
    fleet.toml(
        'concurrency = 3\nmax_fail = "100%"',
        [
            f'name = "t1"\ndatabase = "{fleet.tenants["t1"]}"',
            'name = "t2"\nurl_var = "T2_URL"',
            'name = "t3"\nurl_var = "T3_URL"',
        ],
    )
    done = cli("migrate", "--env", "staging", "--fleet", "--yes", env=fleet.env)
    assert done.returncode == 3, done.stderr
    assert outcomes_of_lines(done.stdout) == {"t1": "✓", "t2": "✗", "t3": "✗"}
    t2 = next(line for line in done.stdout.splitlines() if line.startswith("✗ t2"))
    assert str(port) in t2 or "connect" in t2, t2
    t3 = next(line for line in done.stdout.splitlines() if line.startswith("✗ t3"))
    assert "no_such_database_f3" in t3, t3
    assert fleet.applied(fleet.tenants["t1"]) == ["1_a"]


def outcomes_of_lines(stdout: str) -> dict[str, str]:
    """{target: mark} of the lines printed as targets finish."""
    found = {}
    for line in stdout.splitlines():
        mark, _, rest = line.partition(" ")
        if mark in ("✓", "✗", "=", "!", "·", "-") and rest:
            found[rest.split(" ", 1)[0]] = mark
    return found


def test_failing_canary_starts_nothing_else_then_resume(cli: Cli, fleet: Fleet) -> None:
    """The canary t1 fails: t2 and t3 are "not started", exit 5. Fixed, the same command
    runs the canary, then the rest."""
    fleet.databases_toml(
        'concurrency = 3\nmax_fail = "100%"\ngroups = ["canary", "rest"]',
        {"t1": "canary", "t2": "rest", "t3": "rest"},
    )
    fleet.sql(fleet.tenants["t1"], "CREATE TABLE a (id int)")
    code, found, data = migrate(cli, fleet)
    assert code == 5, data
    assert found == {"t1": "failed", "t2": "not started", "t3": "not started"}
    assert "canary" in data["stopped"]
    assert fleet.applied(fleet.tenants["t2"]) == []
    fleet.sql(fleet.tenants["t1"], "DROP TABLE a")
    code, found, data = migrate(cli, fleet)
    assert code == 0, data
    assert data["resumed_from"] is not None
    assert found == {"t1": "applied", "t2": "applied", "t3": "applied"}
