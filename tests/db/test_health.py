"""health in process: each check's name, ok, detail and duration against the suite's
PostgreSQL and a real HTTP server (the CLI's exit 7 and JSON: tests/cli/test_health_cli.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from predeploy.commands import health
from support import migrating
from support.project import MakeSettings, write_migrations
from support.web import health_only, serving


@pytest.fixture
def web() -> Iterator[str]:
    """A real HTTP server on loopback: /health answers 200, anything else 503."""
    with serving(health_only) as url:
        yield url


def test_healthy_database_and_url(
    make_settings: MakeSettings, migrations_dir: Path, web: str
) -> None:
    write_migrations(migrations_dir, {"1_users": "CREATE TABLE users (id int);"})
    settings = make_settings(PREDEPLOY_HEALTHCHECK_URL=f"{web}/health")
    migrating.migrate(settings)
    report = health.run(settings)
    assert report.ok, report.summary()
    by_name = {c.name: c for c in report.checks}
    assert list(by_name) == ["database", "history", "tables", "http"]
    assert "1 applied" in by_name["history"].detail
    assert any(t["table"] == "public.users" for t in by_name["tables"].data["largest"])
    assert by_name["http"].data == {"status": 200, "attempts": 1}
    assert all(c.seconds >= 0 for c in report.checks)


def test_pending_migration_and_failing_url_are_failed_checks(
    make_settings: MakeSettings, migrations_dir: Path, web: str
) -> None:
    write_migrations(migrations_dir, {"1_users": "CREATE TABLE users (id int);"})
    settings = make_settings(
        PREDEPLOY_HEALTHCHECK_URL=f"{web}/down",
        PREDEPLOY_HEALTHCHECK_RETRIES="2",
        PREDEPLOY_HEALTHCHECK_TIMEOUT="1s",
    )
    report = health.run(settings)
    failed = {c.name: c.detail for c in report.failed}
    assert failed["history"] == "1 pending: 1_users"
    assert failed["http"].endswith("HTTP 503 after 2 tries (timeout 1s each)")
