"""A run's notification that cannot be delivered is a logged warning, never a failure: a
real rollback in process, its notification sent to a port nobody listens on
(commands/run.py Lifecycle.announce_logged)."""

from __future__ import annotations

import socket
from pathlib import Path

import structlog

from predeploy.commands.rollback import rollback
from support import migrating
from support.project import MakeSettings
from support.wayback import write


def _closed_port() -> int:
    """A loopback port that was just free: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_undelivered_notification_is_logged_and_the_rollback_stands(
    make_settings: MakeSettings, migrations_dir: Path, apprise_loaded: None
) -> None:
    write(migrations_dir, "1_users", "CREATE TABLE users (id int);", "DROP TABLE users;")
    url = f"json://127.0.0.1:{_closed_port()}/hook"
    settings = make_settings(
        "staging",
        PREDEPLOY_NOTIFY_URLS=url,
        PREDEPLOY_NOTIFY_ON="all",
        PREDEPLOY_NOTIFY_TIMEOUT="2s",
    )
    migrating.migrate(settings)
    with structlog.testing.capture_logs() as events:
        done = rollback(settings, steps=1, dry_run=False, confirm=lambda *_: None, no_backup=True)
    assert done.error is None and done.undone == ("1_users",)
    (warning,) = [e for e in events if e["event"] == "notification_warning"]
    assert warning["log_level"] == "warning"
    assert "127.0.0.1" in warning["detail"], warning
