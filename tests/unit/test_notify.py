"""Notifications through apprise, against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from structlog.testing import capture_logs

from predeploy.backup.dump import BackupResult
from predeploy.commands import migrate_report
from predeploy.commands.deploy import DeployReport
from predeploy.commands.health import Check, HealthReport
from predeploy.commands.maintenance import MaintenanceReport
from predeploy.commands.runbook import Runbook
from predeploy.commands.steps import Step
from predeploy.errors import ConfigError, HealthCheckFailed, PredeployError
from predeploy.integrations import notify
from predeploy.integrations.notify import Event, NotifyConfig, should_notify
from predeploy.migrate.executor import Applied, MigrationFailed
from support.receivers import Receiver

pytestmark = pytest.mark.usefixtures("apprise_loaded")

PASSWORD = "s3cr@t/pä ss:w%rd"  # needs percent-encoding in a URL, several ways
DB_URL = "postgresql://app:***@db.example.com:5432/app"


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _migrate_report(error: PredeployError | None) -> dict[str, Any]:
    report = migrate_report.Report(env="prod", database=f"{DB_URL}?password={PASSWORD}")
    report.applied = [Applied("20260101000000_add_avatar", 0.42, True, 1)]
    report.pending = [
        migrate_report.Pending(
            "20260101000000_add_avatar", 1, True, True, "cd" * 32, sql="ALTER TABLE users ..."
        ),
        migrate_report.Pending(
            "20260102000000_drop_x", 1, True, True, "ef" * 32, sql=f"-- {PASSWORD}\nDROP x"
        ),
    ]
    report.steps = [Step("backup", "ok", 1.5), Step("apply", "failed", 0.2, "boom")]
    report.backup = BackupResult(
        Path("/var/backups/prod/app-20260101.dump"),
        Path("/var/backups/prod/app-20260101.json"),
        "ab" * 32,
        1024,
        2.0,
        3,
        "custom",
        1.5,
        0.5,
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    report.runbook = Runbook(
        [
            "# undo the 1 migration(s) this run applied, with their down.sql:",
            "invoke rollback --env prod --steps 1 --yes",
            "# or bring the whole database back to the moment before this run:",
            "pm2 stop web",
            "invoke restore --env prod --backup /var/backups/prod/app-20260101.dump --yes",
            "pm2 start web",
        ],
        None,
    )
    report.error = error
    return report.as_dict()


def _failed_prod_migrate() -> Event:
    error = MigrationFailed(
        "20260102000000_drop_x",
        f"could not connect to postgresql://app:{quote(PASSWORD, safe='')}@db2/app",
        sqlstate="42P01",
        line=1,
        column=1,
    )
    return notify.event_from_report(
        "migrate",
        _migrate_report(error),
        env="prod",
        protected=True,
        database=DB_URL,
        changed=True,
        git_revision="0123456789abcdef0123456789abcdef01234567",
    )


def test_failed_prod_migrate_arrives_once_with_report_fields(receiver: Receiver) -> None:
    """A failed prod migrate is one JSON POST carrying the event and the --json report."""
    event = _failed_prod_migrate()
    url = f"json://hook:t0ken-xyz@127.0.0.1:{receiver.port}/deploys"
    config = NotifyConfig(urls=(url,), timeout=5.0, secrets=(PASSWORD,))
    deliveries = notify.send(config, event)
    assert [(d.ok, d.detail) for d in deliveries] == [(True, "delivered")]
    assert "t0ken-xyz" not in deliveries[0].url
    assert deliveries[0].url.startswith("json://hook:")
    assert len(receiver.requests) == 1
    path, _body = receiver.requests[0]
    assert path == "/deploys"
    [payload] = receiver.payloads()
    assert payload["title"] == "✗ prod migrate failed on app (db.example.com)"
    assert payload["type"] == "failure"
    assert "error: migration 20260102000000_drop_x failed" in payload["message"]
    # the run's --json report, top level, as `predeploy migrate --json` prints it
    assert payload["env"] == "prod"
    assert payload["outcome"] == "failed"
    assert payload["exit_code"] == 5
    assert payload["applied"][0]["name"] == "20260101000000_add_avatar"
    assert payload["backup"]["sha256"] == "ab" * 32
    assert [p["name"] for p in payload["pending"]] == [
        "20260101000000_add_avatar",
        "20260102000000_drop_x",
    ]
    assert all("sql" not in p for p in payload["pending"])
    # and the event's own fields
    assert payload["event"] == {
        "command": "migrate",
        "env": "prod",
        "protected": True,
        "database": DB_URL,
        "operator": event.operator,
        "host": event.host,
        "git_revision": "0123456789abcdef0123456789abcdef01234567",
        "outcome": "failed",
        "changed": True,
        "applied": [{"name": "20260101000000_add_avatar", "seconds": 0.42}],
        "backup": "/var/backups/prod/app-20260101.dump",
        "health": {"ok": None, "failed": []},
        "error": payload["error"],
        "runbook": payload["runbook"],
        "runbook_path": None,
        "drift": 0,
        "drift_skipped": None,
    }


def test_password_appears_in_no_message(receiver: Receiver) -> None:
    """Known passwords (plain, percent-encoded), URL passwords and SQL never leave."""
    event = _failed_prod_migrate()
    event = Event(
        **{
            **event.__dict__,
            "error": f"{event.error} (password {PASSWORD}, {quote_plus(PASSWORD)})",
            "runbook": (*event.runbook, "psql postgresql://admin:hunter2@db/app"),
        }
    )
    config = NotifyConfig(urls=(receiver.url(),), timeout=5.0, secrets=(PASSWORD,))
    assert [d.ok for d in notify.send(config, event)] == [True]
    message = notify.message(event, config.secrets)
    sent = receiver.requests[0][1].decode()
    texts = [message.title, message.body, json.dumps(message.fields, ensure_ascii=False), sent]
    forms = {PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD), quote_plus(PASSWORD)}
    for text in texts:
        assert not [form for form in forms if form in text]
        assert "hunter2" not in text
        assert "ALTER TABLE" not in text
        assert "DROP x" not in text
    assert message.fields["event"]["runbook"][-1] == "psql postgresql://admin:***@db/app"
    assert "could not connect to postgresql://app:***@db2/app" in message.body


def test_hung_receiver_costs_at_most_the_timeout(receiver: Receiver, silent_port: int) -> None:
    """A receiver that never answers fails after the timeout; the others still deliver."""
    urls = (f"json://127.0.0.1:{silent_port}/x", receiver.url())
    config = NotifyConfig(urls=urls, timeout=1.0)
    started = time.monotonic()
    hung, answered = notify.send(config, _failed_prod_migrate())
    elapsed = time.monotonic() - started
    assert elapsed < 1.4
    assert (hung.ok, answered.ok) == (False, True)
    assert hung.url == f"json://127.0.0.1:{silent_port}/x"
    assert hung.detail
    assert len(receiver.requests) == 1


def test_refused_port_is_a_failed_delivery_not_an_exception() -> None:
    """A refused connection, or a URL apprise cannot use, is a failed Delivery, logged."""
    port = _refused_port()
    config = NotifyConfig(urls=(f"json://127.0.0.1:{port}/x", "nope://tok3n/x"), timeout=5.0)
    started = time.monotonic()
    refused, unknown = notify.send(config, _failed_prod_migrate())
    assert time.monotonic() - started < 2.0
    assert not refused.ok
    assert "connection error" in refused.detail.lower()
    assert (unknown.ok, unknown.url) == (False, "nope://…")
    assert "not a notification URL" in unknown.detail
    with capture_logs() as logs:
        notify.log_deliveries([refused, unknown])
    assert [(e["event"], e["log_level"]) for e in logs] == [("notification_failed", "warning")] * 2
    assert notify.warnings([refused])[0].startswith(f"notification to {refused.url} failed: ")


def test_nothing_is_sent_without_urls_or_reason(receiver: Receiver) -> None:
    """send returns [] without URLs or when PREDEPLOY_NOTIFY_ON does not ask for it."""
    quiet = Event(command="migrate", env="staging", outcome="ok", changed=True)
    assert notify.send(NotifyConfig(), _failed_prod_migrate()) == []
    assert notify.send(NotifyConfig(urls=(receiver.url(),)), quiet) == []
    assert receiver.requests == []


def test_notify_test_sends_to_every_url(receiver: Receiver) -> None:
    """notify-test reaches each URL whatever PREDEPLOY_NOTIFY_ON; no URLs is exit 2."""
    urls = (receiver.url("/a"), receiver.url("/b"))
    deliveries = notify.test(NotifyConfig(urls=urls, on=frozenset()), env="prod")
    assert [d.ok for d in deliveries] == [True, True]
    assert sorted(path for path, _ in receiver.requests) == ["/a", "/b"]
    payload = receiver.payloads()[0]
    assert payload["title"].startswith("✓ predeploy test message from ")
    assert payload["event"]["command"] == "notify-test"
    with pytest.raises(ConfigError) as raised:
        notify.test(NotifyConfig(), env="prod")
    assert raised.value.exit_code == 2


def _event(
    outcome: str, *, protected: bool = False, changed: bool = False, drift: int = 0
) -> Event:
    return Event(
        command="migrate",
        env="x",
        outcome=outcome,
        protected=protected,
        changed=changed,
        drift=drift,
    )


@pytest.mark.parametrize(
    ("event", "on", "expected"),
    [
        (_event("failed"), {"failure"}, True),
        (_event("interrupted"), {"failure"}, True),
        (_event("needs attention"), {"failure"}, True),
        (_event("ok"), {"failure"}, False),
        (_event("ok", protected=True, changed=True), {"prod-change"}, True),
        (_event("ok", protected=True, changed=False), {"prod-change"}, False),
        (_event("ok", protected=False, changed=True), {"prod-change"}, False),
        (_event("failed", protected=True, changed=True), {"prod-change"}, True),
        (_event("ok"), {"success"}, True),
        (_event("failed"), {"success"}, False),
        (_event("ok", drift=2), {"drift"}, True),
        (_event("ok"), {"drift"}, False),
        (_event("ok"), {"all"}, True),
        (_event("ok"), set(), False),
        (_event("failed"), set(), False),
        (_event("ok", protected=True, changed=True), notify.DEFAULT_TRIGGERS, True),
        (_event("ok", protected=False, changed=True), notify.DEFAULT_TRIGGERS, False),
        (_event("failed"), notify.DEFAULT_TRIGGERS, True),
    ],
)
def test_should_notify_truth_table(event: Event, on: set[str], expected: bool) -> None:
    """PREDEPLOY_NOTIFY_ON: failure, prod-change (protected and changed), success, drift, all."""
    assert should_notify(event, on) is expected


def test_parse_triggers() -> None:
    """PREDEPLOY_NOTIFY_ON parses comma-separated words; empty is the default; typos exit 2."""
    assert notify.parse_triggers(" Failure, drift ") == {"failure", "drift"}
    assert notify.parse_triggers("") == {"failure", "prod-change"}
    with pytest.raises(ConfigError, match="unknown failures"):
        notify.parse_triggers("failures")


def test_message_reads_on_a_phone() -> None:
    """A short title; a body of a few short lines, with the runbook whole (its comments say
    the restore is the alternative to the rollback)."""
    message = notify.message(_failed_prod_migrate())
    assert message.title == "✗ prod migrate failed on app (db.example.com)"
    lines = message.body.splitlines()
    assert lines[0].startswith("error: migration 20260102000000_drop_x failed")
    assert lines[1:3] == ["applied 1:", "  20260101000000_add_avatar (0.4 s)"]
    assert "backup: /var/backups/prod/app-20260101.dump" in lines
    assert lines[-7:] == [
        "runbook:",
        "  # undo the 1 migration(s) this run applied, with their down.sql:",
        "  invoke rollback --env prod --steps 1 --yes",
        "  # or bring the whole database back to the moment before this run:",
        "  pm2 stop web",
        "  invoke restore --env prod --backup /var/backups/prod/app-20260101.dump --yes",
        "  pm2 start web",
    ]
    assert len(lines) <= 13
    done = Event(
        command="migrate",
        env="prod",
        outcome="ok",
        database="postgresql://app@/app?host=/run/postgresql",
        changed=True,
        runbook=("# undo it:", "invoke rollback --env prod --steps 1 --yes"),
    )
    assert notify.message(done).title == "✓ prod migrate ok on app (/run/postgresql)"
    assert notify.message(done).body.splitlines()[-3:] == [
        "to undo:",
        "  # undo it:",
        "  invoke rollback --env prod --steps 1 --yes",
    ]
    ok = Event(command="maintenance", env="prod", outcome="ok", database="")
    assert notify.message(ok).title == "✓ prod maintenance ok"
    assert "the database was not changed" in notify.message(ok).body


def test_a_long_runbook_is_named_by_its_path_never_cut() -> None:
    """A runbook too long for a phone: where it is (path and host), not its first commands
    (a half undo block, pasted, is worse than none)."""
    steps = [(f"# step {n}:", f"predeploy rollback --steps {n}") for n in range(20)]
    runbook = ("# this deploy applied 40 migration(s): ...", *(x for step in steps for x in step))
    event = Event(
        command="deploy",
        env="prod",
        outcome="failed",
        error="boom",
        runbook=runbook,
        runbook_path="/srv/web/logs/runbook-prod-abc.txt",
        host="app1",
    )
    body = notify.message(event).body.splitlines()
    assert body[-2:] == [
        "runbook: 41 lines, see the runbook at /srv/web/logs/runbook-prod-abc.txt on app1",
        "  # this deploy applied 40 migration(s): ...",
    ]
    assert not any("rollback" in line for line in body)


def test_a_two_phase_deploy_event_lists_both_phases() -> None:
    """A deploy's post-deploy phase (the report's post_deploy) is in the event too."""
    pre = migrate_report.Report(env="prod")
    post = migrate_report.Report(env="prod", phase="post-deploy")
    pre.applied = [Applied("1_users", 1.0, True, 1)]
    post.applied = [Applied("2_retire", 1.0, True, 1)]
    deploy = DeployReport(env="prod", app="web", migrate=pre, post=post)
    event = notify.event_from_report(
        "deploy", deploy.as_dict(), env="prod", protected=True, database=DB_URL, changed=True
    )
    assert [a.name for a in event.applied] == ["1_users", "2_retire"]
    assert "applied 2:" in notify.message(event).body


def test_events_from_deploy_and_maintenance_reports() -> None:
    """A deploy's nested migrate and health, and maintenance's needs_attention, fill the event."""
    health = HealthReport("prod", [Check("http", False, "503 from /healthz", 0.1)])
    migrated = migrate_report.Report(env="prod", database=DB_URL)
    migrated.applied = [Applied("20260101000000_add_avatar", 1.0, True, 1)]
    deploy = DeployReport(env="prod", app="web", migrate=migrated, health=health)
    deploy.error = HealthCheckFailed("web is not healthy 60s after the reload: http: 503")
    event = notify.event_from_report(
        "deploy", deploy.as_dict(), env="prod", protected=True, database=DB_URL, changed=True
    )
    assert (event.outcome, event.health_ok, event.health_failed) == (
        "failed",
        False,
        ("http: 503 from /healthz",),
    )
    assert [a.name for a in event.applied] == ["20260101000000_add_avatar"]
    assert notify.message(event).title == "✗ prod deploy failed on app (db.example.com)"
    nightly = MaintenanceReport(env="prod", health=health)
    event = notify.event_from_report(
        "maintenance", nightly.as_dict(), env="prod", protected=True, database=DB_URL, changed=False
    )
    assert (event.outcome, event.error) == ("needs attention", "http: 503 from /healthz")
    assert notify.message(event).title.startswith("⚠ prod maintenance needs attention on app")
