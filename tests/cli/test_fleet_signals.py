"""SIGTERM or SIGINT in the middle of a fleet run: it stops in bounded time with 143 or
130, the tenants in flight are "interrupted" (their migration rolled back), the ones never
started "not started", the runbook exists; the same command again resumes the rest."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from support.cli import Cli
from support.fleets import Fleet, fleet_of, outcomes
from support.hazards import Background, wait_until
from support.servers import Server

# 3_wait sleeps as long as the tenant's table `sleepy` says; 2_b and 3_wait travel in one
# batch (the executor's pipeline of several migrations, each its own transaction)
SCRIPTS = {
    "1_a": "CREATE TABLE a (id int);",
    "2_b": "CREATE TABLE b (id int);",
    "3_wait": "CREATE TABLE c (id int);\n"
    "SELECT pg_sleep(coalesce((SELECT max(s) FROM public.sleepy), 0));",
}
ALL = ["1_a", "2_b", "3_wait"]


@pytest.fixture
def fleet(pg_server: Server, project: Path) -> Iterator[Fleet]:
    with fleet_of(pg_server, project, "t1", "t2", "t3", "t4") as made:
        made.migrations(SCRIPTS)
        for name, database in made.tenants.items():
            seconds = 60 if name in ("t1", "t3") else 0
            made.sql(database, f"CREATE TABLE sleepy AS SELECT {seconds} AS s")
        # two at once: t1 sleeps, t2 applies, t3 starts and sleeps, t4 waits its turn
        made.databases_toml("concurrency = 2\nmax_fail = 0")
        yield made


def sleeping(fleet: Fleet) -> int:
    """How many of the fleet's sessions are in pg_sleep right now."""
    with psycopg.connect(fleet.admin(fleet.control), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
            " AND datname = ANY(%s)",
            (list(fleet.tenants.values()),),
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_fleet_then_resume(
    cli: Cli, fleet: Fleet, signum: signal.Signals, code: int
) -> None:
    """In-flight t1 and t3 interrupted and rolled back, t2 applied, t4 not started; the
    same command then resumes: t2 skipped, the others applied, exit 0."""
    args = ("migrate", "--env", "staging", "--fleet", "--yes", "--json")
    run = Background(fleet.project, *args, env=fleet.env)
    try:
        wait_until(lambda: sleeping(fleet) == 2, timeout=30, what="t1 and t3 in pg_sleep")
        sent = time.monotonic()
        run.process.send_signal(signum)
        done = run.finish(timeout=30)
    finally:
        run.kill()
    assert time.monotonic() - sent < 15
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    assert outcomes(done) == {
        "t1": "interrupted", "t2": "applied", "t3": "interrupted", "t4": "not started"
    }  # fmt: skip
    for name in ("t1", "t3"):
        assert fleet.applied(fleet.tenants[name]) == ["1_a", "2_b"]  # 3_wait rolled back
    assert fleet.applied(fleet.tenants["t2"]) == ALL
    interrupted = {t["name"]: t["applied"] for t in json.loads(done.stdout)["targets"]}
    assert interrupted["t1"] == interrupted["t3"] == ["1_a", "2_b"]
    assert sleeping(fleet) == 0
    data = json.loads(done.stdout)
    runbook = Path(data["runbook_path"]).read_text()
    assert "--target t2" in runbook and "3_wait" in runbook
    t1_section = runbook.split("# == t1 ", 1)[1].split("# == ", 1)[0]
    assert "2_b" in t1_section and "--target t1" in t1_section, t1_section  # what it left
    for database in fleet.tenants.values():
        fleet.sql(database, "UPDATE sleepy SET s = 0")
    again = cli(*args, env=fleet.env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["resumed_from"] == data["fleet_run_id"]
    assert outcomes(again) == {
        "t1": "applied", "t2": "skipped", "t3": "applied", "t4": "applied"
    }  # fmt: skip
    for database in fleet.tenants.values():
        assert fleet.applied(database) == ALL


def test_sigterm_while_a_tenants_backup_waits(cli: Cli, fleet: Fleet) -> None:
    """t1's pg_dump waits for a table a session of the test holds: SIGTERM ends the run with
    143, pg_dump is gone, t1 "interrupted" with nothing applied, no partial dump left."""
    fleet.extra_env = {"PREDEPLOY_LOCK_WAIT": "60s"}
    for database in fleet.tenants.values():
        fleet.sql(database, "UPDATE sleepy SET s = 0")
    fleet.databases_toml("concurrency = 1")
    args = ("migrate", "--env", "staging", "--fleet", "--yes", "--json")
    with psycopg.connect(fleet.admin(fleet.tenants["t1"]), autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE sleepy IN ACCESS EXCLUSIVE MODE")
        run = Background(fleet.project, *args, env=fleet.env)
        try:
            wait_until(lambda: dump_waiting(fleet), timeout=30, what="t1's pg_dump waiting")
            run.process.send_signal(signal.SIGTERM)
            done = run.finish(timeout=30)
        finally:
            run.kill()
    assert done.returncode == 143, done.stderr
    assert "Traceback" not in done.stderr
    found = outcomes(done)
    assert found["t1"] == "interrupted" and set(found.values()) == {"interrupted", "not started"}
    assert not dump_waiting(fleet)
    assert fleet.applied(fleet.tenants["t1"]) == []
    left = [p for p in (fleet.project / "backups").rglob("*") if p.is_file()]
    assert left == [], left


def dump_waiting(fleet: Fleet) -> bool:
    with psycopg.connect(fleet.admin(fleet.control), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (fleet.tenants["t1"],),
        ).fetchone()
    return bool(row and row[0])


def test_sigterm_while_a_tenants_migration_waits_for_a_lock(cli: Cli, fleet: Fleet) -> None:
    """t1's migration waits (lock timeouts and retries) for a table a session of the test
    holds: SIGTERM ends the run with 143 in bounded time, t1 "interrupted", 3_wait (an ALTER)
    not applied there, the holder untouched."""
    fleet.migrations({"3_wait": "ALTER TABLE sleepy ADD COLUMN x int;"})
    fleet.extra_env = {"PREDEPLOY_LOCK_RETRIES": "100", "PREDEPLOY_BLOCKER_WAIT": "60s"}
    fleet.databases_toml("concurrency = 1")
    args = ("migrate", "--env", "staging", "--fleet", "--yes", "--json")
    with psycopg.connect(fleet.admin(fleet.tenants["t1"]), autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT * FROM sleepy")
        run = Background(fleet.project, *args, env=fleet.env)
        try:
            wait_until(lambda: lock_waits(fleet) >= 1, timeout=30, what="t1's ALTER waiting")
            sent = time.monotonic()
            run.process.send_signal(signal.SIGTERM)
            done = run.finish(timeout=30)
        finally:
            run.kill()
        assert time.monotonic() - sent < 15
        assert not holder.closed
    assert done.returncode == 143, done.stderr
    assert "Traceback" not in done.stderr
    found = outcomes(done)
    assert found["t1"] == "interrupted" and set(found.values()) == {"interrupted", "not started"}
    assert fleet.applied(fleet.tenants["t1"]) == ["1_a", "2_b"]


def lock_waits(fleet: Fleet) -> int:
    with psycopg.connect(fleet.admin(fleet.control), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
            " AND wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE sleepy%%'",
            (fleet.tenants["t1"],),
        ).fetchone()
    return int(row[0]) if row else 0
