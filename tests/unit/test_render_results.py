"""What the CLI prints for a result, as tables of (result, the exact text): the renderers
of cli/render.py and cli/render_run.py that had no direct test (health, backup, backups'
empty list, last runs, lint, resolve, notify-test, a step, the runbook, maintenance)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from predeploy.backup.dump import BackupResult
from predeploy.cli.render import (
    render_backup,
    render_backups,
    render_health,
    render_lint,
    render_resolved,
    render_runs,
    render_sent,
)
from predeploy.cli.render_run import render_maintenance, render_runbook, render_step
from predeploy.commands.health import Check, HealthReport
from predeploy.commands.maintenance import MaintenanceReport
from predeploy.commands.notify_test import Sent
from predeploy.commands.resolve import Resolved
from predeploy.commands.runbook import Runbook
from predeploy.commands.steps import Step
from predeploy.db.catalog import LiveTable
from predeploy.errors import HealthCheckFailed
from predeploy.integrations.notify import Delivery
from predeploy.migrate.lint import Finding, LintedFile, LintReport

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
DB = Check("database", True, "connected in 2 ms", 0.002)
HTTP = Check("http", False, "GET http://app/health: HTTP 503", 1.25)
BACKUP = BackupResult(
    path=Path("/b/app-1.dump"),
    manifest=Path("/b/app-1.json"),
    sha256="ab" * 32,
    size=3 * 1024**2,
    seconds=2.04,
    tables=7,
    format="custom",
    dump_seconds=1.5,
    verify_seconds=0.5,
    created_at=WHEN,
    pruned=(Path("/b/app-0.dump"),),
)


@pytest.mark.parametrize(
    ("report", "text"),
    [
        (
            HealthReport("prod", [DB, HTTP]),
            "✓ database   0.002s  connected in 2 ms\n"
            "✗ http       1.250s  GET http://app/health: HTTP 503\n"
            "UNHEALTHY: 1 check(s) failed",
        ),
        (HealthReport("prod", [DB]), "✓ database   0.002s  connected in 2 ms\nhealthy"),
        (HealthReport("prod", []), "healthy"),
    ],
    ids=["one-failed", "healthy", "no-checks"],
)
def test_health(report: HealthReport, text: str) -> None:
    assert render_health(report) == text


def test_backup_and_what_it_pruned() -> None:
    assert render_backup(BACKUP) == (
        "backup verified: /b/app-1.dump\n"
        f"  3.0 MiB, 7 tables, custom format, 2.0s, sha256 {'ab' * 32}\n"
        "  pruned app-0.dump"
    )
    assert render_backups([]) == "no backups"


def test_last_runs_columns_are_as_wide_as_their_longest_value() -> None:
    runs: list[dict[str, object]] = [
        {
            "started_at": WHEN,
            "command": "migrate",
            "outcome": "refused: confirmation (no terminal)",
            "migrations": 0,
            "operator": "ada",
            "host": "web1",
        },
        {
            "started_at": "2026-01-01 00:00:00",  # as a string (JSON), printed as it is
            "command": "rollback",
            "outcome": "rolled back",
            "migrations": 2,
            "operator": "bob",
            "host": "web2",
        },
    ]
    assert render_runs(runs).splitlines() == [
        "",
        "last runs:",
        "  2026-01-02 03:04:05  migrate   refused: confirmation (no terminal)  0 migration(s)"
        "  by ada@web1",
        "  2026-01-01 00:00:00  rollback  rolled back                          2 migration(s)"
        "  by bob@web2",
    ]
    assert render_runs([]) == ""


def _finding(severity: str, **extra: object) -> Finding:
    base: dict[str, object] = {
        "migration": "1_index",
        "file": "migration.sql",
        "line": 3,
        "column": 1,
        "rule": "require-concurrent-index-creation",
        "severity": severity,
        "message": "Creating an index blocks writes",
        "help": "create the index CONCURRENTLY.",
        "statement": "CREATE INDEX a ON events (at)",
    }
    return Finding(**(base | extra))  # type: ignore[arg-type]


EVENTS = LiveTable("events", 1, "public.events", 1_200_000, 3 * 1024**3)


@pytest.mark.parametrize(
    ("finding", "first"),
    [
        (
            _finding("warning"),
            "warning 1_index/migration.sql:3:1  require-concurrent-index-creation",
        ),
        (
            _finding("error", tables=(EVENTS,), raised=True),
            "error   1_index/migration.sql:3:1  require-concurrent-index-creation"
            " (raised: public.events ~1,200,000 rows 3.0 GiB)",
        ),
        (
            _finding("info", tables=(EVENTS,)),
            "info    1_index/migration.sql:3:1  require-concurrent-index-creation"
            " (public.events ~1,200,000 rows 3.0 GiB)",
        ),
        (
            _finding("error", waived=True),
            "waived  1_index/migration.sql:3:1  require-concurrent-index-creation",
        ),
    ],
    ids=["warning", "raised", "sized", "waived"],
)
def test_a_lint_finding(finding: Finding, first: str) -> None:
    files = [LintedFile("1_index", "migration.sql", True, waivers=("ban-drop-table",))]
    lines = render_lint(LintReport([finding], files)).splitlines()
    assert lines[:3] == [
        first,
        "        CREATE INDEX a ON events (at)",
        "        Creating an index blocks writes. Create the index CONCURRENTLY.",
    ]
    assert lines[3] == "waiver  1_index: allows ban-drop-table"
    assert lines[4].startswith("lint: 1 file(s), ")


def test_an_empty_lint() -> None:
    assert render_lint(LintReport()) == (
        "lint: 0 file(s), 0 error(s), 0 warning(s), 0 info, 0 waived"
    )


def test_resolve_and_notify_test() -> None:
    assert render_resolved(Resolved("1_a", "rolled_back")) == "migration 1_a marked rolled back"
    sent = Sent(
        [
            Delivery("ntfy://***@host/topic", True, "", 0.5),
            Delivery("mailto://***@host", False, "connection refused", 1.0),
        ]
    )
    assert render_sent(sent) == (
        "✓ ntfy://***@host/topic  0.50s\n✗ mailto://***@host  1.00s  connection refused"
    )


@pytest.mark.parametrize(
    ("step", "text"),
    [
        (Step("backup", "ok", 1.5, "3.0 MiB"), "✓ backup               1.50s  (3.0 MiB)"),
        (Step("apply", "failed", 0.25, "syntax error"), "✗ apply                0.25s"),
        (Step("drift", "skipped", 0.0), "- drift                0.00s"),
        (Step("reload", "interrupted", 2.0), "✗ reload               2.00s"),
        (Step("odd", "unknown", 0.0), "? odd                  0.00s"),
    ],
    ids=["ok-with-detail", "failed-hides-detail", "skipped", "interrupted", "unknown"],
)
def test_a_step(step: Step, text: str) -> None:
    assert render_step(step) == text


@pytest.mark.parametrize(
    ("runbook", "lines"),
    [
        (Runbook([], None), []),
        (
            Runbook(["# nothing"], Path("/l/runbook.txt"), root=Path("/app")),
            ["", "runbook (also in /l/runbook.txt):", "# run these lines in /app", "# nothing"],
        ),
        (
            Runbook(["# nothing"], None, unsaved="/l/runbook.txt: No space left on device"),
            ["", "runbook (not saved: /l/runbook.txt: No space left on device):", "# nothing"],
        ),
    ],
    ids=["empty", "kept", "not-saved"],
)
def test_a_runbook(runbook: Runbook, lines: list[str]) -> None:
    assert render_runbook(runbook) == "\n".join(lines)


def test_maintenance_says_what_it_did_and_what_needs_attention() -> None:
    report = MaintenanceReport(
        "prod",
        backup=BACKUP,
        health=HealthReport("prod", [DB, HTTP]),
        pruned_logs=[Path("/l/a.log"), Path("/l/b.txt")],
        notes=["2 backups kept"],
        errors=[HealthCheckFailed("http: GET http://app/health: HTTP 503")],
    )
    lines = render_maintenance(report).splitlines()
    assert lines[:2] == ["backup: /b/app-1.dump (3.0 MiB)", "pruned: /b/app-0.dump"]
    assert lines[2:5] == render_health(report.health).splitlines()  # type: ignore[arg-type]
    assert lines[5:] == [
        "logs: removed 2 run log(s) and runbook(s)",
        "note: 2 backups kept",
        *(f"needs attention: {item}" for item in report.needs_attention),
    ]
    assert any("HTTP 503" in line for line in lines[7:])
    assert render_maintenance(MaintenanceReport("prod")) == ""
