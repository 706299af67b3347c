"""A long history, many findings, a long run: what is shown stays short, says where the rest is."""

from __future__ import annotations

import pytest

from predeploy.cli.render_run import render_report
from predeploy.commands import summary
from predeploy.commands.migrate_report import Pending, Report
from predeploy.db.catalog import LiveTable
from predeploy.migrate.lint import Finding, LintReport
from predeploy.migrate.outcome import Applied

COUNT = 150


def _finding(migration: str, severity: str, rows: int | None = None) -> Finding:
    tables = () if rows is None else (LiveTable("t", rows, f"public.t{rows}", rows, rows * 100),)
    return Finding(migration, "f", 1, 1, "some-rule", severity, "m", None, "ALTER ...", tables)


def _lint(*findings: Finding) -> LintReport:
    return LintReport(findings=list(findings), files=[])


def _report(count: int) -> Report:
    names = [f"{i:03}_step" for i in range(count)]
    report = Report(env="prod", database="app")
    report.pending = [Pending(n, 1, i != 3, False, "0" * 64) for i, n in enumerate(names)]
    report.applied = [Applied(n, 0.01 * (i % 7), True, 1) for i, n in enumerate(names)]
    report.lint = _lint(*(_finding(n, "warning", 10) for n in names))
    return report


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
