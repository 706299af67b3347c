"""`predeploy health`: exit 7 with each check in the JSON when one fails, an unreachable
database as a failed check (in process: tests/db/test_health.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Cli
from support.web import health_only, serving


@pytest.fixture
def web() -> Iterator[str]:
    """A real HTTP server on loopback: /health answers 200, anything else 503."""
    with serving(health_only) as url:
        yield url


def test_cli_exits_7_with_each_check_in_json(
    cli: Cli, database_url: str, tmp_path: Path, web: str
) -> None:
    (tmp_path / "migrations").mkdir()
    env = {"DATABASE_URL": database_url, "PREDEPLOY_HEALTHCHECK_URL": f"{web}/nope"}
    env |= {"PREDEPLOY_HEALTHCHECK_RETRIES": "1", "PREDEPLOY_LOG_DIR": str(tmp_path / "logs")}
    done = cli("health", "--env", "staging", "--json", env=env)
    assert done.returncode == 7, done.stderr
    report = json.loads(done.stdout)
    assert [(c["name"], c["ok"]) for c in report["checks"]] == [
        ("database", True),
        ("history", True),
        ("tables", True),
        ("http", False),
    ]
    assert set(report["checks"][0]) >= {"name", "ok", "detail", "seconds"}
    assert done.stderr.strip().splitlines()[-1].startswith("predeploy: unhealthy: http: GET")


def test_cli_unreachable_database_is_a_failed_check(cli: Cli, tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://app:pw@127.0.0.1:9/app", "PREDEPLOY_CONNECT_TIMEOUT": "1s"}
    done = cli(
        "health", "--env", "staging", "--json", env=env | {"PREDEPLOY_LOG_DIR": str(tmp_path)}
    )
    assert done.returncode == 7
    checks = json.loads(done.stdout)["checks"]
    assert checks[0]["name"] == "database"
    assert "connection refused" in checks[0]["detail"]
    assert "Traceback" not in done.stderr
