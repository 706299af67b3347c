"""Lint that knows the deploy phases: what a pre-deploy migration may not do.

A pre-deploy migration runs while the old release still serves requests, so it must leave
a schema the old code can use. Dropping or renaming a table or column, SET NOT NULL on an
existing column, changing a column's type, renaming an enum value, or adding a NOT NULL
column without a default (the old code's INSERTs lack it) break that release until the
reload finishes: in a pre-deploy migration each is a warning (rule
``breaks-running-release``) with the advice to mark the migration post-deploy or split it.
In a post-deploy migration the new release is already live, so squawk's findings that only
concern the running release (dropping and renaming) are lowered to info. squawk's rules
stay the base; this layer only names the phase.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from predeploy.migrate.discovery import POST_DEPLOY, POST_MARKER, Migration
from predeploy.migrate.lint import Finding, LintReport
from predeploy.migrate.sqlscript import Statement, position_to_line_column

__all__ = ["RULE", "apply_phases"]

RULE = "breaks-running-release"
# squawk rules about what the running release reads: harmless once the new one is live
_RELEASE_RULES = frozenset(
    {"ban-drop-column", "ban-drop-table", "renaming-column", "renaming-table"}
)
_ADVICE = (
    f"make it a post-deploy migration ({POST_MARKER} as its first line: it then runs after "
    f"the new release is live), or split it: expand now (add the new, keep the old), "
    f"contract after the release is live"
)


def apply_phases(report: LintReport, migrations: Iterable[Migration]) -> LintReport:
    """``report`` with the phase findings added and the post-deploy ones relaxed."""
    chosen = list(migrations)
    waived = {f.migration: set(f.waivers) for f in report.files}
    phase = {m.name: m.phase for m in chosen}
    findings = [
        dataclasses.replace(f, severity="info", help=f"{f.help or ''} (post-deploy: fine)".strip())
        if phase.get(f.migration) == POST_DEPLOY and f.rule in _RELEASE_RULES and not f.raised
        else f
        for f in report.findings
    ]
    for migration in chosen:
        if migration.phase != POST_DEPLOY:
            findings += _breaking(migration, waived.get(migration.name, set()))
    files = [dataclasses.replace(f, phase=phase.get(f.migration)) for f in report.files]
    findings.sort(key=lambda f: (f.migration, f.line, f.column, f.rule))
    return LintReport(findings=findings, files=files)


def _breaking(migration: Migration, waived: set[str]) -> list[Finding]:
    """The breaking changes of a pre-deploy migration, but those to a table the same
    migration creates, or a NOT NULL on a column it adds: no running release uses those."""
    statements = migration.parsed.statements
    created = {s.tables[0] for s in statements if s.kind == "CreateStmt" and s.tables}
    added = {pair for s in statements for pair in s.adds}
    return [
        _finding(migration, statement, change.text, waived)
        for statement in statements
        for change in statement.breaking
        if change.table not in created
        and not (
            change.change in ("set-not-null", "type") and (change.table, change.column) in added
        )
    ]


def _finding(migration: Migration, statement: Statement, what: str, waived: set[str]) -> Finding:
    line, column = position_to_line_column(migration.parsed.text, statement.offset + 1)
    return Finding(
        migration=migration.name,
        file=str(migration.sql_path),
        line=line,
        column=column,
        rule=RULE,
        severity="warning",
        message=f"{what} in a pre-deploy migration: the release still running uses the old schema",
        help=_ADVICE,
        statement=statement.first_line,
        waived=RULE in waived,
    )
