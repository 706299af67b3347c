"""Long lists cut to what an operator reads: the confirmation question and the reports.

The first production run of a 163-migration history printed 3,468 lines, and the typed
question came after ~780 lines of lint. These pure functions keep a list whole while it is
short (``WHOLE`` items or fewer) and otherwise say its size, its first and last few names,
and the findings that can hurt: every error (up to ``ERRORS``) and the warnings on tables
that exist now, largest first (up to ``WARNINGS``). A warning on a table the run itself
creates cannot lock or break anything that runs today. The rest is counted, never dropped
without a word: each cut says how many it hid and which command shows them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from predeploy.migrate.lint import Finding, LintReport

__all__ = [
    "DRIFT",
    "ENDS",
    "ERRORS",
    "TABLE",
    "WARNINGS",
    "WHOLE",
    "capped",
    "finding_line",
    "lint_counts",
    "lint_lines",
    "names",
    "span",
]

WHOLE = 10  # a list this long or shorter is shown whole
TABLE = 20  # a status table this long or shorter is shown whole
ENDS = 3  # a longer list of names: its first and last this many
ERRORS = 10  # lint errors shown in the question
WARNINGS = 5  # lint warnings on live tables shown in the question
DRIFT = 5  # drift differences shown in the question


def names(items: Sequence[str], rest: str, *, ends: int = ENDS) -> list[str]:
    """One indented line per name while short; else the first and last ``ends`` names with
    a line between saying how many are left out and where they all are (``rest``)."""
    if len(items) <= 2 * ends + 1:
        return [f"  {name}" for name in items]
    between = f"  … {len(items) - 2 * ends} more ({rest})"
    return [*(f"  {name}" for name in items[:ends]), between, *(f"  {n}" for n in items[-ends:])]


def span(items: Sequence[str]) -> str:
    """'a' or 'a … z': the first and the last of ``items``."""
    return items[0] if len(items) == 1 else f"{items[0]} … {items[-1]}" if items else ""


def capped(lines: Sequence[str], limit: int, rest: str | None = None) -> list[str]:
    """``lines`` up to ``limit``, then one line saying how many more, and where they all are
    (``rest``: 'predeploy lint --env prod')."""
    if len(lines) <= limit:
        return list(lines)
    where = f" ({rest})" if rest else ""
    return [*lines[:limit], f"  … and {len(lines) - limit} more{where}"]


def lint_counts(report: LintReport) -> str:
    """'0 error(s), 412 warning(s), 30 info, 1 waived'."""
    counts = report.counts()
    return (
        f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info, "
        f"{counts['waived']} waived"
    )


def lint_lines(report: LintReport, rest: str) -> list[str]:
    """The findings for a question: all of them while few; else the errors and the
    warnings on live tables, largest first, each list capped, and where every one is."""
    active = report.active
    head = f"Lint ({len(active)} finding(s): {lint_counts(report)})"
    if len(active) <= WHOLE:
        return [f"{head}:", *(finding_line(f) for f in active)] if active else [head]
    lines = [f"{head}:", *capped([finding_line(f) for f in report.errors], ERRORS)]
    warnings = [f for f in active if f.severity == "warning"]
    live = _on_live_tables(warnings)
    if live:
        lines.append(f"  {len(live)} warning(s) on existing tables, largest first:")
        lines += capped([finding_line(f) for f in live], WARNINGS)
    elif warnings:
        lines.append("  no warning concerns a table that exists now")
    return [*lines, f"  every finding: {rest}"]


def finding_line(finding: Finding) -> str:
    """'  warning 1_index:1 require-concurrent-index-creation (public.events ~5,000 rows)'."""
    sizes = ", ".join(f"{t.table} ~{t.rows:,} rows" for t in finding.tables)
    return f"  {finding.severity:<7} {finding.migration}:{finding.line} {finding.rule}" + (
        f" ({sizes})" if sizes else ""
    )


def _on_live_tables(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that name an existing table, largest table first (stable)."""
    return sorted((f for f in findings if f.tables), key=lambda f: -f.tables[0].rows)
