"""Migration lint: squawk's findings, mapped to predeploy's severities and live table sizes.

squawk (the `squawk-cli` package) reads the files and reports JSON, never parsed
from its text. Rules predeploy makes moot are left out: every migration session
already has a lock_timeout and a statement_timeout, and a migration that runs in
a transaction (squawk is told which do) cannot stop part-way, so "make it
re-runnable" only matters for the others. Each finding is tied, through pglast,
to the statement at its position and the tables that statement names; a finding
on a table with PREDEPLOY_LINT_LARGE_TABLE_ROWS live rows or more is raised one level.
`-- predeploy: allow RULE[, RULE]` in a migration waives those rules for that file.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from predeploy.errors import ConfigError
from predeploy.migrate.discovery import Migration
from predeploy.postgres import programs
from predeploy.postgres.relations import LiveTable, resolve
from predeploy.postgres.sessions import Conn

__all__ = ["LEVELS", "Finding", "LintReport", "lint", "squawk_program"]

log = structlog.get_logger(__name__)

LEVELS = ("info", "warning", "error")
# made moot by predeploy's runner: it sets both timeouts in every migration session
MOOT = ("require-lock-timeout", "require-statement-timeout", "require-timeout-settings")
# made moot for migrations that run in one transaction: they never stop part-way
MOOT_IN_TRANSACTION = ("prefer-robust-stmts",)

# Base severities. Errors: the statement fails or destroys a database whatever the
# table. Warnings: long locks, table rewrites or scans, or changes that break the
# running release; raised to error on a large table. Info: style and future-proofing.
_SEVERITY = {
    "ban-drop-database": "error",
    "ban-concurrent-index-creation-in-transaction": "error",
    # squawk's parser is its own: the server (and pglast, its parser) judges syntax, and a
    # real syntax error fails the migration itself with its line and column (exit 5)
    "syntax-error": "warning",
    "prefer-bigint-over-int": "info",
    "prefer-bigint-over-smallint": "info",
    "prefer-big-int": "info",
    "prefer-identity": "info",
    "prefer-timestamp-tz": "info",
    "prefer-text-field": "info",  # a varchar's size change is changing-column-type
    "require-enum-value-ordering": "info",
    "ban-char-field": "info",
    "prefer-robust-stmts": "info",
    "require-table-schema": "info",
}
_WAIVER = re.compile(r"--\s*predeploy:\s*allow\s+([a-z0-9-]+(?:\s*,\s*[a-z0-9-]+)*)", re.I)


@dataclass(frozen=True)
class Finding:
    migration: str
    file: str
    line: int  # 1-based
    column: int  # 1-based
    rule: str
    severity: str
    message: str
    help: str | None
    statement: str  # the statement's first line
    tables: tuple[LiveTable, ...] = ()  # live tables it names, largest first
    raised: bool = False  # severity raised: a large table
    waived: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "tables"}
        data["tables"] = [t.as_dict() for t in self.tables]
        return data


@dataclass
class LintReport:
    findings: list[Finding] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)  # per file: name, transactional

    @property
    def active(self) -> list[Finding]:
        return [f for f in self.findings if not f.waived]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.active if f.severity == "error"]

    def counts(self) -> dict[str, int]:
        counts = {level: 0 for level in LEVELS} | {"waived": 0}
        for finding in self.findings:
            counts["waived" if finding.waived else finding.severity] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        by_file: dict[str, list[dict[str, Any]]] = {f["migration"]: [] for f in self.files}
        for finding in self.findings:
            by_file.setdefault(finding.migration, []).append(finding.as_dict())
        return {
            "counts": self.counts(),
            "files": [f | {"findings": by_file.get(f["migration"], [])} for f in self.files],
        }


def squawk_program() -> Path:
    """squawk from this virtualenv (the squawk-cli dependency), else from PATH."""
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file():
        return beside
    found = shutil.which("squawk")
    if found:
        return Path(found)
    raise ConfigError(
        "squawk not found: it comes with predeploy (the squawk-cli package); "
        "reinstall predeploy in this virtualenv (pip install -e .)"
    )


def lint(
    migrations: Iterable[Migration],
    conn: Conn | None,
    *,
    large_rows: int,
    server_version: str | None = None,
) -> LintReport:
    """Lint ``migrations``; with ``conn``, findings carry the live size of their tables."""
    chosen = list(migrations)
    waivers = {m.name: _waivers(m.text) for m in chosen}
    report = LintReport(
        files=[
            {
                "migration": m.name,
                "file": str(m.sql_path),
                "transactional": m.parsed.transactional,
                "waivers": sorted(waivers[m.name]),
            }
            for m in chosen
        ]
    )
    raw: list[tuple[Migration, dict[str, Any]]] = []
    for transactional in (True, False):
        group = [m for m in chosen if m.parsed.transactional == transactional]
        if group:
            raw += _squawk(group, in_transaction=transactional, server_version=server_version)
    located = [(m, item, *_statement(m, item)) for m, item in raw]
    names = {name for *_, tables in located for name in tables}
    live = resolve(conn, names) if conn is not None and names else {}
    report.findings = [
        _finding(
            m,
            item,
            statement=statement,
            tables=[live[n] for n in tables if n in live],
            large_rows=large_rows,
            waived=waivers[m.name],
        )
        for m, item, statement, tables in located
    ]
    report.findings.sort(key=lambda f: (f.migration, f.line, f.column, f.rule))
    log.info("lint_done", files=len(chosen), **report.counts())
    return report


def _squawk(
    group: list[Migration], *, in_transaction: bool, server_version: str | None
) -> list[tuple[Migration, dict[str, Any]]]:
    excluded = MOOT + (MOOT_IN_TRANSACTION if in_transaction else ())
    argv = ["--reporter", "json", "--exclude", ",".join(excluded)]
    if in_transaction:
        argv.append("--assume-in-transaction")
    if server_version:
        argv += ["--pg-version", server_version]
    by_path = {str(m.sql_path): m for m in group}
    out = programs.Collect()
    try:
        running = programs.start(
            squawk_program(), [*argv, *by_path], env=programs.child_env(), stdout=out
        )
        code = running.wait(300)
    except programs.ProgramFailed as exc:
        raise ConfigError(f"squawk could not run: {exc.reason}") from None
    try:
        items = json.loads(out.text() or "[]")
    except ValueError:
        items = None
    if code not in (0, 1) or not isinstance(items, list):
        detail = (running.stderr.lines or [f"exit {code}"])[-1]
        raise ConfigError(f"squawk failed: {detail}")
    return [(by_path[item["file"]], item) for item in items if item.get("file") in by_path]


def _statement(migration: Migration, item: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The first line of the statement at the finding's position, and the tables it names."""
    text = migration.text
    lines = text.split("\n")
    line = min(int(item.get("line", 0)), len(lines) - 1)
    offset = sum(len(x) + 1 for x in lines[:line]) + int(item.get("column", 0))
    chosen = None
    for statement in migration.parsed.statements:
        if statement.offset <= offset:
            chosen = statement
    if chosen is None:
        return "", ()
    first = next((x.strip() for x in chosen.text.strip().splitlines() if x.strip()), "")
    return first[:120], chosen.tables


def _finding(
    migration: Migration,
    item: dict[str, Any],
    *,
    statement: str,
    tables: list[LiveTable],
    large_rows: int,
    waived: set[str],
) -> Finding:
    """One squawk item as a finding: its statement's live tables (largest first) and level."""
    rule = str(item.get("rule_name") or "unknown")
    tables = sorted({t.oid: t for t in tables}.values(), key=lambda t: -t.rows)
    squawk_level = str(item.get("level") or "").lower()
    severity = _SEVERITY.get(rule, "error" if squawk_level == "error" else "warning")
    raised = bool(tables) and tables[0].rows >= large_rows and severity != "error"
    if raised:
        severity = LEVELS[LEVELS.index(severity) + 1]
    return Finding(
        migration=migration.name,
        file=str(migration.sql_path),
        line=int(item.get("line", 0)) + 1,
        column=int(item.get("column", 0)) + 1,
        rule=rule,
        severity=severity,
        message=str(item.get("message") or ""),
        help=item.get("help"),
        statement=statement,
        tables=tuple(tables),
        raised=raised,
        waived=rule in waived,
    )


def _waivers(text: str) -> set[str]:
    return {
        rule.strip().lower()
        for match in _WAIVER.finditer(text)
        for rule in match.group(1).split(",")
    }
