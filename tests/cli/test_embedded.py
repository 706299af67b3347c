"""The embedded dev server: started once under .pgdata/, reused, stopped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from predeploy.db import embedded
from support.cli import Cli


@pytest.fixture
def dev_project(project: Path) -> Iterator[Path]:
    """A project whose embedded server is stopped at the end, whatever happens."""
    yield project
    embedded.stop(project / ".pgdata")


def test_check_starts_then_reuses_the_embedded_server(cli: Cli, dev_project: Path) -> None:
    """`invoke check` in dev starts the server once; the next command reuses it."""
    first = cli("check", "--json")
    assert first.returncode == 0, first.stderr
    facts = json.loads(first.stdout)
    assert facts["embedded"] is True
    assert facts["database"] == embedded.DEV_DATABASE
    pgdata = dev_project / ".pgdata"
    initialised = (pgdata / "PG_VERSION").stat().st_mtime_ns
    running = embedded.status(pgdata)
    assert running is not None

    up = cli("db.up", "--json")
    assert json.loads(up.stdout) == {
        "pgdata": str(pgdata),
        "pid": running.pid,
        "state": "already running",
        "url": str(running.url),
    }
    second = cli("check", "--json")
    assert second.returncode == 0, second.stderr
    again = embedded.status(pgdata)
    assert again is not None and again.pid == running.pid
    assert (pgdata / "PG_VERSION").stat().st_mtime_ns == initialised


def test_url_down_and_up_again_keep_the_data(cli: Cli, dev_project: Path) -> None:
    """db.url prints a URL; db.down stops the server; db.up brings back the same data."""
    url = cli("db.url")
    assert url.returncode == 0, url.stderr
    assert url.stdout.startswith("postgresql://postgres@/predeploy_dev?host=")
    down = cli("db.down", "--json")
    assert json.loads(down.stdout) == {"state": "stopped"}
    assert embedded.status(dev_project / ".pgdata") is None
    assert json.loads(cli("db.down", "--json").stdout) == {"state": "not running"}
    up = cli("db.up", "--json")
    assert json.loads(up.stdout)["state"] == "started"
