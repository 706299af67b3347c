"""A schema-per-tenant fleet (schema = "t1"... in the env's database): the tenants migrate
side by side (each takes Prisma's key shared plus a two-key lock of its schema), and a
`prisma migrate`-style holder of the plain key 72707369 stops them all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from support.cli import Cli
from support.fleets import Fleet, fleet_of, outcomes
from support.hazards import Background, holding, wait_until
from support.servers import Server

NAMES = ("t1", "t2", "t3")


@pytest.fixture
def fleet(pg_server: Server, project: Path) -> Iterator[Fleet]:
    with fleet_of(pg_server, project) as made:
        made.migrations(
            {"1_a": "CREATE TABLE a (id int);", "2_slow": "SELECT pg_sleep(3);\nCREATE TABLE b ();"}
        )
        made.toml(
            'concurrency = 3\nmax_fail = "100%"',
            [f'name = "{n}"\nschema = "{n}"' for n in NAMES],
        )
        yield made


def sleeping(fleet: Fleet) -> int:
    with psycopg.connect(fleet.admin(fleet.control), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
            " AND datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def test_schema_tenants_migrate_side_by_side(cli: Cli, fleet: Fleet) -> None:
    """The three schemas' 2_slow sleep at the same time; each schema gets its own history
    (and tables); nothing lands in public."""
    run = Background(
        fleet.project, "migrate", "--env", "staging", "--fleet", "--yes", "--json",
        env=fleet.env,
    )  # fmt: skip
    try:
        wait_until(lambda: sleeping(fleet) == 3, timeout=30, what="three tenants in pg_sleep")
        done = run.finish(timeout=60)
    finally:
        run.kill()
    assert done.returncode == 0, done.stderr
    assert outcomes(done) == dict.fromkeys(NAMES, "applied")
    for name in NAMES:
        assert fleet.applied(fleet.control, name) == ["1_a", "2_slow"]
    assert fleet.applied(fleet.control, "public") == []
    again = cli("status", "--env", "staging", "--fleet", "--check", "--json", env=fleet.env)
    assert again.returncode == 0, again.stderr
    assert set(outcomes(again).values()) == {"up to date"}


def test_prisma_style_holder_of_the_plain_key_blocks_every_schema(cli: Cli, fleet: Fleet) -> None:
    """A session holding pg_advisory_lock(72707369) in the database: every schema tenant
    fails with exit 6 and nothing is applied."""
    with holding(fleet.admin(fleet.control), "SELECT pg_advisory_lock(72707369)"):
        done = cli("migrate", "--env", "staging", "--fleet", "--yes", "--json", env=fleet.env)
    assert done.returncode == 6, done.stderr
    assert outcomes(done) == dict.fromkeys(NAMES, "failed")
    assert all(t["exit_code"] == 6 for t in json.loads(done.stdout)["targets"])
    for name in NAMES:
        assert fleet.applied(fleet.control, name) == []
