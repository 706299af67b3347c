"""A long history on its first production run: a question that fits one screen, a short
report, a summary `status`, and the migration being applied shown on a terminal only."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import psycopg
import pytest

from predeploy.cli.render import render_report
from predeploy.commands import summary
from predeploy.commands.migrate import Pending, Report
from predeploy.db.catalog import LiveTable
from predeploy.migrate.lint import Finding, LintReport
from predeploy.migrate.outcome import Applied
from support.cli import Cli
from support.project import write_migrations
from support.terminal import run_in_terminal

ROWS = 5000
COUNT = 150


def _finding(migration: str, severity: str, rows: int | None = None) -> Finding:
    tables = () if rows is None else (LiveTable("t", rows, f"public.t{rows}", rows, rows * 100),)
    return Finding(migration, "f", 1, 1, "some-rule", severity, "m", None, "ALTER ...", tables)


def _lint(*findings: Finding) -> LintReport:
    return LintReport(findings=list(findings), files=[])


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, []),
        (7, [f"  m{i}" for i in range(7)]),
        (8, ["  m0", "  m1", "  m2", "  … 2 more (see all)", "  m5", "  m6", "  m7"]),
    ],
)
def test_names_keep_both_ends_of_a_long_list(count: int, expected: list[str]) -> None:
    """Seven names or fewer are listed whole; more: the first and last three, and the count."""
    assert summary.names([f"m{i}" for i in range(count)], "see all") == expected


def test_capped_says_how_many_it_hid_and_where() -> None:
    """A list over its limit ends with one line counting the rest, naming where they are."""
    assert summary.capped(["a", "b"], 2, "x") == ["a", "b"]
    assert summary.capped(["a", "b", "c"], 2, "predeploy lint") == [
        "a",
        "b",
        "  … and 1 more (predeploy lint)",
    ]


def test_a_few_findings_are_listed_whole() -> None:
    """Ten findings or fewer: each one, info included, under the counts."""
    lines = summary.lint_lines(_lint(_finding("1_a", "info"), _finding("2_b", "warning", 9)), "x")
    assert lines == [
        "Lint (2 finding(s): 0 error(s), 1 warning(s), 1 info, 0 waived):",
        "  info    1_a:1 some-rule",
        "  warning 2_b:1 some-rule (public.t9 ~9 rows)",
    ]


def test_many_findings_show_errors_and_the_largest_live_tables() -> None:
    """Many findings: at most 10 errors, then the 5 warnings on the largest existing tables
    (those on tables that do not exist yet are counted, not shown), then where all are."""
    errors = [_finding(f"e{i:02}", "error", 10) for i in range(12)]
    live = [_finding(f"w{rows}", "warning", rows) for rows in (5, 500, 50, 5000, 0, 50_000, 7)]
    new = [_finding(f"n{i:03}", "warning") for i in range(300)]
    info = [_finding(f"i{i:03}", "info", 10**6) for i in range(100)]
    lines = summary.lint_lines(_lint(*errors, *live, *new, *info), "predeploy lint --env prod")
    assert lines[0] == "Lint (419 finding(s): 12 error(s), 307 warning(s), 100 info, 0 waived):"
    assert lines[1:11] == [summary.finding_line(f) for f in errors[:10]]
    assert lines[11] == "  … and 2 more"
    assert lines[12] == "  7 warning(s) on existing tables, largest first:"
    shown = [line.split()[1].split(":")[0] for line in lines[13:18]]
    assert shown == ["w50000", "w5000", "w500", "w50", "w7"]
    assert lines[18:] == ["  … and 2 more", "  every finding: predeploy lint --env prod"]


def test_warnings_only_on_new_tables_say_so() -> None:
    """A first run on an empty database: no warning concerns a live table, and it says so."""
    lines = summary.lint_lines(_lint(*(_finding(f"n{i:02}", "warning") for i in range(20))), "x")
    assert lines[1:] == ["  no warning concerns a table that exists now", "  every finding: x"]


def _report(count: int) -> Report:
    names = [f"{i:03}_step" for i in range(count)]
    report = Report(env="prod", database="app")
    report.pending = [Pending(n, 1, i != 3, False, "0" * 64) for i, n in enumerate(names)]
    report.applied = [Applied(n, 0.01 * (i % 7), True, 1) for i, n in enumerate(names)]
    report.lint = _lint(*(_finding(n, "warning", 10) for n in names))
    return report


def test_the_report_of_a_long_run_is_short_and_verbose_lists_everything() -> None:
    """After applying 150: counts, both ends, the slowest, the lint digest; -v lists each
    migration and every finding; a run of 10 keeps its line per migration."""
    short = render_report(_report(COUNT)).splitlines()
    assert len(short) < 25, short
    assert short[0].startswith("pending on app (prod): 150 migration(s), 1 outside a transaction")
    assert "applied 150 migration(s) in" in "\n".join(short)
    assert "  slowest: 006_step 0.060s, 013_step 0.060s, 020_step 0.060s" in short
    verbose = render_report(_report(COUNT), verbose=True)
    assert all(f"applied {i:03}_step in" in verbose for i in range(COUNT))
    assert verbose.count("some-rule") == COUNT
    small = render_report(_report(10))
    assert all(f"applied {i:03}_step in" in small for i in range(10))


def _history(count: int, start: int = 0) -> dict[str, str]:
    """Migrations that each add a column and a plain index to the live table `events`: a
    lint warning on an existing table each, and an info finding for the int column."""
    return {
        f"{i + 2:04}_events_c{i}": f"ALTER TABLE events ADD COLUMN c{i} int;\n"
        f"CREATE INDEX events_c{i} ON events (c{i});\n"
        for i in range(start, start + count)
    }


@pytest.fixture
def long_history(project: Path, database_url: str, cli: Cli) -> dict[str, str]:
    """`events` with rows, applied; then 150 pending migrations on it."""
    env = {
        "DATABASE_URL": database_url,
        "PREDEPLOY_BACKUP_DIR": str(project / "backups"),
        "NO_COLOR": "1",
    }
    first = "CREATE TABLE events (id bigint PRIMARY KEY);"
    write_migrations(project / "migrations", {"0001_events": first})
    assert cli("migrate", "--env", "staging", "--yes", env=env).returncode == 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO events SELECT generate_series(1, %s)", (ROWS,))
        conn.execute("ANALYZE events")
    write_migrations(project / "migrations", _history(COUNT))
    return env


def applied_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        done = "SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL"
        (count,) = conn.execute(done).fetchall()[0]
        return int(count)


@pytest.mark.slow
def test_first_prod_run_of_a_long_history_fits_a_screen(
    project: Path, database_url: str, long_history: dict[str, str]
) -> None:
    """150 pending with a lint warning each, on a terminal: the typed question comes within
    15 lines of the start and is at most 40 lines, with the counts and the largest tables;
    typing the name applies them all, the report after is short, and the migration being
    applied was shown (one rewritten line)."""
    name = database_url.rsplit("/", 1)[1]
    code, screen = run_in_terminal(
        [sys.executable, "-m", "predeploy", "migrate", "--env", "prod"],
        cwd=project,
        env={**os.environ, **long_history},
        answer=name,
        prompt=b"to go on: ",
        timeout=240,
    )
    assert code == 0, screen
    lines = screen.split("\n")
    asked = next(i for i, line in enumerate(lines) if "About to apply" in line)
    typed = next(i for i, line in enumerate(lines) if "to go on:" in line)
    assert asked < 15, screen
    question = "\n".join(lines[asked : typed + 1])
    assert typed - asked < 40, question
    assert f"About to apply {COUNT} migration(s) on {name} on 127.0.0.1:" in question
    assert "(prod (protected)):" in question
    assert f"… {COUNT - 6} more (every one: predeploy status --env prod --all)" in question
    assert re.search(r"Lint \(\d+ finding\(s\): 0 error\(s\), 150 warning\(s\), \d+ info", question)
    assert "150 warning(s) on existing tables, largest first:" in question
    assert f"public.events ~{ROWS:,} rows" in question
    assert "every finding: predeploy lint --env prod" in question
    assert applied_count(database_url) == COUNT + 1
    after = lines[typed + 1 :]
    assert len(after) < 40, "\n".join(after)
    assert f"applied {COUNT} migration(s) in" in screen
    assert "\r\x1b[Kapplying 0002_events_c0… (1/150)\r" in screen
    assert "applying 0151_events_c149… (150/150)" in screen


@pytest.mark.slow
def test_status_summarises_a_long_history_and_all_lists_it(
    cli: Cli, project: Path, database_url: str, long_history: dict[str, str]
) -> None:
    """`status` on 151 migrations: the counts, the latest applied and the pending names
    (10, then how many more); `--all` a line each; `--json` every one. A captured migrate
    shows no 'applying' line and no control characters."""
    env = long_history
    shown = cli("status", "--env", "staging", env=env)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "151 migration(s): 1 applied, 150 pending" in text
    assert "latest applied: 0001_events" in text
    assert "pending (150):" in text
    assert "  … and 140 more (predeploy status --env staging --all)" in text
    assert "0151_events_c149" not in text
    assert len(text.splitlines()) < 25, text
    every = cli("status", "--env", "staging", "--all", env=env).stdout
    assert all(n in every for n in _history(COUNT)), every
    data = json.loads(cli("status", "--env", "staging", "--json", env=env).stdout)
    assert len(data["migrations"]) == COUNT + 1
    done = cli("migrate", "--env", "staging", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert "applying" not in done.stdout + done.stderr
    assert "\x1b[K" not in done.stdout + done.stderr
    assert f"applied {COUNT} migration(s) in" in done.stdout
    assert len(done.stdout.splitlines()) < 40, done.stdout
