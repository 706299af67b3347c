"""What a migrate run is asked (``Options``) and what it reports (``Report``, its
``Pending`` migrations), and the confirmation question it asks from them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from predeploy._util import lazy
from predeploy._util.pasted import program
from predeploy.commands import summary
from predeploy.commands.steps import Step
from predeploy.config.policy import Policy
from predeploy.errors import PredeployError
from predeploy.migrate import discovery as migrations
from predeploy.migrate.discovery import PRE_DEPLOY

if TYPE_CHECKING:
    from predeploy.backup.dump import BackupResult
    from predeploy.backup.progress import ProgressFn
    from predeploy.commands import gates
    from predeploy.commands.runbook import Runbook
    from predeploy.drift.report import DriftReport
    from predeploy.migrate import executor
    from predeploy.migrate.blockers import Blocker
    from predeploy.migrate.lint import LintReport
else:  # the question only when something is pending (nothing pending must start fast)
    gates = lazy.module("predeploy.commands.gates")

__all__ = ["Applying", "Options", "Pending", "Report", "describe", "question"]

# (name, its place 1..n, n) before each migration runs; (None, done, n) when the apply ends
Applying = Callable[[str | None, int, int], None]


@dataclass(frozen=True)
class Options:
    """How this run was asked for."""

    yes: bool = False
    dry_run: bool = False
    rehearse: bool = False
    no_backup: bool = False
    force_lint: bool = False
    allow_drift: bool = False
    drift_said_skipped: bool = False  # deploy's post phase: its pre phase said why already
    post_deploy: bool = False  # apply the post-deploy migrations instead of the pre-deploy ones
    notify: bool = True  # deploy sends one notification for the whole deploy
    interactive: bool = False
    ask: Callable[[str], str] = input
    progress: ProgressFn | None = None
    applying: Applying | None = None  # on a terminal: the migration that runs now


@dataclass(frozen=True)
class Pending:
    """A pending migration as the report shows it: no SQL unless it is a dry run."""

    name: str
    statements: int | None  # None: PostgreSQL's parser (pglast) cannot parse the file
    transactional: bool
    has_down: bool
    checksum: str
    phase: str = PRE_DEPLOY
    sql: str | None = None


@dataclass
class Report:
    """What a migrate run did; ``error`` is set when it stopped on one."""

    env: str
    database: str = ""
    phase: str = PRE_DEPLOY
    steps: list[Step] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    later: list[str] = field(default_factory=list)  # pending in the other phase
    applied: list[executor.Applied] = field(default_factory=list)
    backup: BackupResult | None = None
    rehearsal: list[executor.Rehearsed] = field(default_factory=list)
    lint: LintReport | None = None
    drift: DriftReport | None = None
    blockers: list[Blocker] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    runbook: Runbook | None = None
    error: PredeployError | None = None
    policy: dict[str, Any] = field(default_factory=dict)  # which policy applied, and why

    @property
    def failed_step(self) -> str | None:
        return next((s.name for s in self.steps if s.outcome in ("failed", "interrupted")), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "database": self.database,
            "phase": self.phase,
            "outcome": "failed" if self.error else "ok",
            "error": str(self.error) if self.error else None,
            "exit_code": self.error.exit_code if self.error else 0,
            "steps": [s.__dict__ for s in self.steps],
            "pending": [
                {k: v for k, v in p.__dict__.items() if k != "sql" or v is not None}
                for p in self.pending
            ],
            "applied": [a.__dict__ for a in self.applied],
            "backup": self.backup.as_dict() if self.backup else None,
            "rehearsal": [r.as_dict() for r in self.rehearsal],
            "lint": self.lint.as_dict() if self.lint else None,
            "drift": self.drift.as_dict() if self.drift else None,
            "blockers": [b.as_dict() for b in self.blockers],
            "warnings": self.warnings,
            "later": self.later,
            "runbook": self.runbook.commands if self.runbook else [],
            "policy": self.policy,
            "runbook_path": str(self.runbook.path) if self.runbook and self.runbook.path else None,
        }


def question(policy: Policy, report: Report, verb: str = "apply") -> str:
    """The confirmation question, one screen whatever the history's length: the pending
    names, warnings, drift and lint each cut to a few lines that say what they hid."""
    tool = f"{program()} %s --env {policy.env}"
    names = [p.name for p in report.pending]
    where = policy.target or report.database
    about = f"About to {verb} {len(names)} migration(s) on {where} ({policy.label}):"
    short = len(names) <= 2 * summary.ENDS + 1
    lines = (
        [f"{about} {', '.join(names)}"]
        if short
        else [about, *summary.names(names, f"every one: {tool % 'status'} --all")]
    )
    lines.append(f"Backup: {report.backup.path}" if report.backup else "No backup was taken.")
    lines += summary.capped(
        [f"Warning: {w}" for w in report.warnings], summary.WARNINGS, "in the log file"
    )
    if report.drift is not None and report.drift.drifted:
        lines.append(f"Drift ({len(report.drift.differences)} difference(s) made by hand):")
        lines += summary.capped(
            [f"  {d.kind} {d.name}: {d.change}" for d in report.drift.differences],
            summary.DRIFT,
            tool % "drift",
        )
    return "\n".join(lines) + gates.lint_lines(report.lint, tool % "lint")


def describe(migration: migrations.Migration, *, with_sql: bool) -> Pending:
    """A pending migration for the report; its SQL only for a dry run (secrets in it are
    masked where the report is printed, as everywhere)."""
    script = migration.parsed
    text = migration.text if with_sql else None
    return Pending(
        name=migration.name,
        statements=None if script.parse_error else len(script.statements),
        transactional=script.transactional,
        has_down=bool(migration.down_script and migration.down_script.statements),
        checksum=migration.checksum,
        phase=migration.phase,
        sql=text,
    )
