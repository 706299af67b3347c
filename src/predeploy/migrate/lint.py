"""Migration lint: squawk's findings, mapped to predeploy's severities and live table sizes.

squawk (the `squawk-cli` package) reads the files and reports JSON, never parsed
from its text. Rules predeploy makes moot are left out: every migration session
already has a lock_timeout and a statement_timeout, and a migration that runs in
a transaction (squawk is told which do) cannot stop part-way, so "make it
re-runnable" only matters for the others. Each finding is tied, through pglast,
to the statement at its position and the tables that statement names; a finding
on a table with PREDEPLOY_LINT_LARGE_TABLE_ROWS live rows or more is raised one level.
`-- predeploy: allow RULE[, RULE]` in a migration waives those rules for that file.

squawk's findings are kept in the cache folder (``<root>/.predeploy/cache/lint/``, see
``predeploy._util.cache``), one entry per file, keyed by its path and bytes (SHA-256), squawk's
version, and everything that changes squawk's answer: the server's version, the
in-transaction flag, the excluded rules and a `.squawk.toml` squawk would read. A run with
nothing new runs no squawk; files not in the cache go to squawk in parallel batches (one
per core). The live table sizes are read again on every run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from predeploy._util import cache
from predeploy.db.catalog import LiveTable, resolve
from predeploy.db.connect import Conn
from predeploy.errors import ConfigError
from predeploy.migrate.discovery import Migration
from predeploy.migrate.sqlscript import position_to_line_column
from predeploy.programs import run as programs

__all__ = ["LEVELS", "Finding", "LintReport", "LintedFile", "lint", "squawk_program"]

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
    # squawk's parser is its own: an error when PostgreSQL's (pglast) agrees (the migration
    # would fail: a protected env refuses before its backup), else a warning
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
_SYNTAX_HELP = (
    "the migration would fail on this statement: fix it (if the server takes syntax newer "
    "than both parsers, --force-lint runs it anyway)"
)
_BATCH_FILES = 100  # a squawk run's share of the files that are not in the cache, at least
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


_UNPHASED = "-"  # a report the phase rules have not seen: its files say no phase at all


@dataclass(frozen=True)
class LintedFile:
    """A migration lint read: whether it runs in a transaction, the rules it waives, and
    (once ``phaselint.apply_phases`` has seen it) its phase."""

    migration: str
    file: str
    transactional: bool
    waivers: tuple[str, ...] = ()
    phase: str | None = _UNPHASED

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "migration": self.migration,
            "file": self.file,
            "transactional": self.transactional,
            "waivers": list(self.waivers),
        }
        return data if self.phase == _UNPHASED else data | {"phase": self.phase}


@dataclass
class LintReport:
    findings: list[Finding] = field(default_factory=list)
    files: list[LintedFile] = field(default_factory=list)

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
        by_file: dict[str, list[dict[str, Any]]] = {f.migration: [] for f in self.files}
        for finding in self.findings:
            by_file.setdefault(finding.migration, []).append(finding.as_dict())
        return {
            "counts": self.counts(),
            "files": [f.as_dict() | {"findings": by_file.get(f.migration, [])} for f in self.files],
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
    cache_dir: Path | None = None,
) -> LintReport:
    """Lint ``migrations``; with ``conn``, findings carry the live size of their tables.

    ``cache_dir``: the cache folder (``predeploy._util.cache.folder(root)``); by default the user's.
    """
    chosen = list(migrations)
    waivers = {m.name: _waivers(m.text) for m in chosen}
    report = LintReport(
        files=[
            LintedFile(
                m.name, str(m.sql_path), m.parsed.transactional, tuple(sorted(waivers[m.name]))
            )
            for m in chosen
        ]
    )
    raw, work = _raw(chosen, server_version, cache_dir or cache.user_folder())
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
    log.info("lint_done", files=len(chosen), **work, **report.counts())
    return report


def _raw(
    chosen: list[Migration], server_version: str | None, cache_dir: Path
) -> tuple[list[tuple[Migration, dict[str, Any]]], dict[str, int]]:
    """squawk's items for ``chosen``, and how much squawk ran: files it read, its runs."""
    raw: list[tuple[Migration, dict[str, Any]]] = []
    work = {"linted": 0, "squawk_runs": 0}
    for transactional in (True, False):
        group = [m for m in chosen if m.parsed.transactional == transactional]
        if group:
            raw += _squawk(
                group,
                in_transaction=transactional,
                server_version=server_version,
                cache_dir=cache_dir,
                work=work,
            )
    return raw, work


def _squawk(
    group: list[Migration],
    *,
    in_transaction: bool,
    server_version: str | None,
    cache_dir: Path,
    work: dict[str, int],
) -> list[tuple[Migration, dict[str, Any]]]:
    """squawk's items for each migration of ``group``: kept ones, else squawk's own."""
    program = squawk_program()
    excluded = MOOT + (MOOT_IN_TRANSACTION if in_transaction else ())
    argv = ["--reporter", "json", "--exclude", ",".join(excluded)]
    if in_transaction:
        argv.append("--assume-in-transaction")
    if server_version:
        argv += ["--pg-version", server_version]
    folder = cache_dir / "lint"
    options = json.dumps([squawk_version(program, cache_dir), argv, _squawk_config()])
    keys = {m.name: _key(options, m) for m in group}
    found = {m.name: cache.read_json(folder / f"{keys[m.name]}.json") for m in group}
    missing = [m for m in group if not isinstance(found[m.name], list)]
    for name, items in _run_squawk(program, argv, missing, work).items():
        found[name] = items
        cache.write_json(folder / f"{keys[name]}.json", items)
    return [(m, item) for m in group for item in found[m.name]]


def squawk_version(program: Path, cache_dir: Path) -> str:
    """squawk's version (``squawk --version``), kept in the cache by path, size and time."""
    answer = cache.probe(program, cache_dir, _ask_squawk_version)
    if not isinstance(answer, str):
        raise ConfigError(f"squawk could not run: `{program} --version` gave no version")
    return answer


def _ask_squawk_version(program: Path) -> str | None:
    try:
        out = programs.output(program, ["--version"], env=programs.child_env(), timeout=30)
    except programs.ProgramFailed:
        return None
    return out.strip().split()[-1] if out.strip() else None


def _squawk_config() -> str:
    """The `.squawk.toml` squawk would read (it looks from its working folder up), or ''."""
    here = Path.cwd()
    for folder in (here, *here.parents):
        path = folder / ".squawk.toml"
        if path.is_file():
            try:
                return path.read_text(errors="replace")
            except OSError:
                return ""
    return ""


def _key(options: str, migration: Migration) -> str:
    text = f"{options}\0{migration.sql_path}\0{migration.checksum}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _run_squawk(
    program: Path, argv: list[str], chosen: list[Migration], work: dict[str, int]
) -> dict[str, list[dict[str, Any]]]:
    """Run squawk over ``chosen``, in parallel batches; each migration's items, by name."""
    if not chosen:
        return {}
    workers = max(1, min(os.cpu_count() or 1, math.ceil(len(chosen) / _BATCH_FILES)))
    size = math.ceil(len(chosen) / workers)
    found: dict[str, list[dict[str, Any]]] = {m.name: [] for m in chosen}
    runs: list[tuple[programs.Running, programs.Collect, dict[str, Migration]]] = []
    try:
        for start in range(0, len(chosen), size):
            by_path = {str(m.sql_path): m for m in chosen[start : start + size]}
            out = programs.Collect()
            env = programs.child_env()
            running = programs.start(program, [*argv, *by_path], env=env, stdout=out)
            runs.append((running, out, by_path))
            work["linted"] += len(by_path)
            work["squawk_runs"] += 1
        for running, out, by_path in runs:
            for item in _items(running, running.wait(300), out):
                migration = by_path.get(str(item.pop("file", "")))
                if migration is not None:
                    found[migration.name].append(item)
    except programs.ProgramFailed as exc:
        raise ConfigError(f"squawk could not run: {exc.reason}") from None
    finally:
        for running, _, _ in runs:
            running.kill()  # a no-op once it has exited
    return found


def _items(running: programs.Running, code: int, out: programs.Collect) -> list[dict[str, Any]]:
    try:
        items = json.loads(out.text() or "[]")
    except ValueError:
        items = None
    if code not in (0, 1) or not isinstance(items, list):
        detail = (running.stderr.lines or [f"exit {code}"])[-1]
        raise ConfigError(f"squawk failed: {detail}")
    return [item for item in items if isinstance(item, dict)]


def _statement(migration: Migration, item: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The first line of the statement at the finding's position, and the tables it names."""
    text = migration.text
    lines = text.split("\n")
    line = min(int(item.get("line", 0)), len(lines) - 1)
    offset = sum(len(x) + 1 for x in lines[:line]) + int(item.get("column", 0))
    if migration.parsed.parse_error is not None:  # one unparsed statement: show the line
        return lines[line].strip()[:120], ()
    chosen = None
    for statement in migration.parsed.statements:
        if statement.offset <= offset:
            chosen = statement
    if chosen is None:
        return "", ()
    return chosen.first_line, chosen.tables


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
    message, help_ = str(item.get("message") or ""), item.get("help")
    line, column = int(item.get("line", 0)) + 1, int(item.get("column", 0)) + 1
    parsed = migration.parsed
    if rule == "syntax-error" and parsed.parse_error is not None:
        severity = "error"
        message = f"{message} (PostgreSQL's parser too: {parsed.parse_error})"
        help_ = _SYNTAX_HELP
        if parsed.parse_error_at is not None:  # the server's place, not squawk's
            line, column = position_to_line_column(parsed.text, parsed.parse_error_at + 1)
    raised = bool(tables) and tables[0].rows >= large_rows and severity != "error"
    if raised:
        severity = LEVELS[LEVELS.index(severity) + 1]
    return Finding(
        migration=migration.name,
        file=str(migration.sql_path),
        line=line,
        column=column,
        rule=rule,
        severity=severity,
        message=message,
        help=help_,
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
