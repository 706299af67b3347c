"""Lint in process: squawk's JSON mapped to our severities with live table sizes, the
transaction rule, and the blocker scan against a real session holding a lock (the CLI's
waivers, prod policy and blocker wait: tests/cli/test_lint.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from predeploy.commands.lint import lint
from predeploy.migrate import blockers
from predeploy.migrate import discovery as migrations
from predeploy.migrate.lint import MOOT
from support.lint_cases import DANGEROUS, hold, make_events, wait_idle_in_transaction
from support.project import MakeSettings, write_migrations


@pytest.fixture
def events(database_url: str) -> str:
    """Tables users and events (5,000 rows, analysed) in the test's database."""
    return make_events(database_url)


def test_each_dangerous_statement_maps_to_its_rule_and_size(
    make_settings: MakeSettings, migrations_dir: Path, events: str
) -> None:
    write_migrations(migrations_dir, {name: sql for name, (sql, _, _) in DANGEROUS.items()})
    report = lint(make_settings("staging")).report
    found = {(f.migration, f.rule): f for f in report.findings}
    for name, (_, rule, severity) in DANGEROUS.items():
        finding = found[(name, rule)]
        assert finding.severity == severity, (name, finding)
        assert finding.line == 1 and not finding.raised
    index = found[("1_index", "require-concurrent-index-creation")]
    assert [(t.table, t.rows) for t in index.tables] == [("public.events", 5000)]
    assert index.statement == "CREATE INDEX events_at ON events (at)"
    fk = found[("4_fk", "adding-foreign-key-constraint")]
    assert [t.table for t in fk.tables] == ["public.events", "public.users"]  # largest first
    assert not {f.rule for f in report.findings} & set(MOOT)  # the runner sets both timeouts
    data = report.as_dict()
    assert [f["migration"] for f in data["files"]] == list(DANGEROUS)
    assert data["files"][5]["transactional"] is False


def test_a_large_table_raises_the_severity(
    make_settings: MakeSettings, migrations_dir: Path, events: str
) -> None:
    write_migrations(migrations_dir, {"1_index": DANGEROUS["1_index"][0]})
    report = lint(make_settings("staging", PREDEPLOY_LINT_LARGE_TABLE_ROWS="5000")).report
    (finding,) = [f for f in report.findings if f.rule == "require-concurrent-index-creation"]
    assert (finding.severity, finding.raised) == ("error", True)
    assert report.errors == [finding]


def test_robustness_matters_only_outside_a_transaction(
    make_settings: MakeSettings, migrations_dir: Path, events: str
) -> None:
    write_migrations(
        migrations_dir,
        {
            "1_in": "CREATE TABLE a (id bigint);",
            "2_out": "CREATE INDEX CONCURRENTLY events_body ON events (body);",
        },
    )
    report = lint(make_settings("staging")).report
    robust = [(f.migration, f.severity) for f in report.findings if f.rule == "prefer-robust-stmts"]
    assert robust == [("2_out", "info")]


def test_blocker_scan_names_a_session_idle_in_transaction(
    make_settings: MakeSettings, migrations_dir: Path, events: str
) -> None:
    write_migrations(migrations_dir, {"1_type": DANGEROUS["2_type"][0]})
    ready, release = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=hold, args=(events, "SELECT count(*) FROM events", ready, release)
    )
    thread.start()
    try:
        assert ready.wait(10)
        wait_idle_in_transaction(events)
        with psycopg.connect(events, autocommit=True) as conn:
            pending = migrations.discover(migrations_dir)
            assert blockers.tables_of(pending) == {"events"}
            (found,) = blockers.scan(conn, blockers.tables_of(pending), max_age=60)
            other = blockers.scan(conn, {"users"}, max_age=60)
    finally:
        release.set()
        thread.join()
    assert (found.application, found.state, found.tables) == (
        "reporting",
        "idle in transaction",
        ("events",),
    )
    assert found.query == "SELECT count(*) FROM events" and found.query_start is not None
    assert other == []
    assert "application reporting, idle in transaction" in blockers.describe(found)
