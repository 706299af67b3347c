"""The gates of a run that changes the database, each decided by the env's policy.

Lint errors, the missing terminal, ``--no-backup``, the confirmation and the blocking
sessions: every command that changes the database (migrate, deploy, rehearse, rollback,
restore) passes the same gates the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from predeploy._util.log import REPORTED
from predeploy._util.operator import operator
from predeploy.commands import summary
from predeploy.commands.confirm import require_typed, require_yes
from predeploy.config.policy import Policy
from predeploy.config.settings import Settings
from predeploy.db.connect import Conn
from predeploy.db.failures import translated
from predeploy.errors import CheckFailed, ConfigError, MigrationError, Refused
from predeploy.migrate import blockers as blockers_mod
from predeploy.migrate.blockers import Blocker
from predeploy.migrate.discovery import Migration
from predeploy.migrate.lint import LintReport

if TYPE_CHECKING:
    from predeploy.backup.dump import ProgressFn
    from predeploy.commands.restore import RestorePlan, RestoreResult
    from predeploy.migrate.undo import Chosen

__all__ = [
    "Asked",
    "Asking",
    "blockers",
    "confirm",
    "confirm_undo",
    "lint",
    "lint_lines",
    "no_backup",
    "refuse_without_terminal",
    "restore_confirmed",
]

log = structlog.get_logger(__name__)


class Asking(Protocol):
    """What a gate needs to know about how the run was asked for."""

    @property
    def yes(self) -> bool: ...
    @property
    def interactive(self) -> bool: ...
    @property
    def ask(self) -> Callable[[str], str]: ...


@dataclass(frozen=True)
class Asked:
    """How a run was asked for: --yes, and whether (and how) a terminal can be asked."""

    yes: bool
    interactive: bool
    ask: Callable[[str], str]


class _NoBackup(Protocol):
    @property
    def no_backup(self) -> bool: ...


def lint(policy: Policy, report: LintReport, *, force: bool) -> None:
    """Log the findings; where the policy says so, error-level ones refuse the run."""
    for finding in (f for f in report.active if f.severity != "info"):  # info: counted by lint
        log.warning(
            "lint_finding",
            **{REPORTED: True},
            migration=finding.migration,
            line=finding.line,
            rule=finding.rule,
            severity=finding.severity,
            tables=[t.table for t in finding.tables],
        )
    if not report.errors or not policy.lint_errors_block:
        return
    errors = sorted({f"{f.migration} {f.rule}" for f in report.errors})
    named = ", ".join(errors[: summary.ERRORS]) + (
        f" and {len(errors) - summary.ERRORS} more (predeploy lint --env {policy.env})"
        if len(errors) > summary.ERRORS
        else ""
    )
    if force:
        log.warning(
            "lint_forced",
            operator=operator(),
            errors=len(report.errors),
            findings=", ".join(errors),
        )
        return
    raise CheckFailed(
        f"lint found {len(report.errors)} error(s) in {policy.label}: {named}; fix them, waive "
        f"a rule in the file (-- predeploy: allow RULE), or pass --force-lint (logged with "
        f"your name)"
    )


def refuse_without_terminal(policy: Policy, options: Asking, database: str, doing: str) -> None:
    """Refused (exit 8) when a confirmation is needed and there is no terminal to ask on."""
    if policy.confirmation != "none" and not options.yes and not options.interactive:
        if policy.caution:  # the database, not the env, asks for it: say which and why
            raise Refused(
                f"{policy.caution}; {doing} needs a confirmation and there is no terminal to "
                f"ask on: run it from a terminal, or pass --yes; nothing was done",
                "confirmation (no terminal)",
            )
        raise Refused(
            f"{doing} {database} ({policy.label}) needs a confirmation and there is no terminal "
            f"to ask on: run it from a terminal, or pass --yes; nothing was done",
            "confirmation (no terminal)",
        )


def no_backup(policy: Policy, options: _NoBackup) -> None:
    """ConfigError when ``--no-backup`` is asked for where the policy forbids it."""
    if options.no_backup and not policy.no_backup_allowed:
        error = ConfigError(
            f"--no-backup is refused in {policy.label}: set PREDEPLOY_ALLOW_NO_BACKUP=1 to run "
            f"without a verified backup, if you really must"
        )
        error.refused_by = "--no-backup"
        raise error


def confirm(policy: Policy, options: Asking, database: str, question: str) -> None:
    """The policy's confirmation: the database name typed, or y/N."""
    action = f"changing {database} ({policy.label})"
    if policy.confirmation == "typed":
        require_typed(
            database,
            question,
            yes=options.yes,
            interactive=options.interactive,
            ask=options.ask,
            action=action,
        )
    elif policy.confirmation == "yes":
        require_yes(
            question,
            yes=options.yes,
            interactive=options.interactive,
            ask=options.ask,
            action=action,
        )


def blockers(
    settings: Settings,
    policy: Policy,
    options: Asking,
    *,
    conn: Conn,
    pending: Iterable[Migration],
    database: str,
) -> list[Blocker]:
    """Sessions that would make the migrations' locks wait: listed; where the policy says
    so, asked about on a terminal, or waited for (PREDEPLOY_BLOCKER_WAIT) with --yes."""
    names = blockers_mod.tables_of(pending)
    with translated(conn, "scanning for blocking sessions", error=MigrationError):
        seen = blockers_mod.scan(conn, names, settings.blocker_max_age, uncertain=True)
    for blocker in seen:
        log.warning("blocker", detail=blockers_mod.describe(blocker), **{REPORTED: True})
    found = [b for b in seen if b.certain]  # the rest: the lock timeout and retries name them
    if not found or policy.blockers == "list":
        return found  # the executor's lock_timeout and retries bound the stall
    if options.yes or not options.interactive:
        with translated(conn, "waiting for blocking sessions", error=MigrationError):
            left = blockers_mod.wait_until_gone(
                conn, names, settings.blocker_max_age, settings.blocker_wait
            )
        if left:
            raise MigrationError(
                f"{len(left)} session(s) still hold or wait for locks on the tables to migrate "
                f"after {settings.blocker_wait:g}s (PREDEPLOY_BLOCKER_WAIT): "
                + "; ".join(blockers_mod.describe(b) for b in left)
                + "; nothing was applied"
            )
        log.info("blockers_gone")
        return left
    require_yes(
        "Sessions that would block this migration's locks:\n"
        + "\n".join(f"  {blockers_mod.describe(b)}" for b in found)
        + "\nApplying now makes application queries on those tables wait up to "
        "PREDEPLOY_LOCK_TIMEOUT per attempt.",
        yes=False,
        interactive=options.interactive,
        ask=options.ask,
        action=f"migrating {database} past blocking sessions",
        gate="blockers",
    )
    return found


def lint_lines(report: LintReport | None, rest: str = "predeploy lint") -> str:
    """The findings, for a confirmation question: all while few, else the errors and the
    warnings on the largest live tables (predeploy.commands.summary); ``rest`` shows all."""
    if report is None:
        return ""
    if not report.active:
        return "\nLint: no findings."
    return "\n" + "\n".join(summary.lint_lines(report, rest))


def confirm_undo(
    asking: Asking, *, no_backup: bool
) -> Callable[[Sequence[Chosen], str, Policy], None]:
    """Rollback's gate, asked once the rollback knows its database and policy: refused
    without a terminal (unless --yes, which is logged with the operator's name), else the
    policy's confirmation naming every migration to undo."""

    def gate(chosen: Sequence[Chosen], database: str, policy: Policy) -> None:
        names = ", ".join(c.migration.name for c in chosen)
        refuse_without_terminal(policy, asking, database, "rolling back")
        if asking.yes:
            structlog.get_logger("predeploy").info(
                "confirmation_waived", operator=operator(), action="rollback"
            )
            return
        backup_first = policy.protected and not no_backup
        confirm(
            policy,
            asking,
            database,
            f"About to undo {len(chosen)} migration(s) on {policy.target or database} "
            f"({policy.label}): {names}"
            + ("\nA verified backup is taken first." if backup_first else ""),
        )

    return gate


def restore_confirmed(
    settings: Settings,
    backup: Path | None,
    asking: Asking,
    describe: Callable[[RestorePlan], str],
    *,
    other_database: bool = False,
    progress: ProgressFn | None = None,
    run_id: str = "",
) -> RestoreResult:
    """Restore ``backup`` (by default the newest of this database) once its database's name
    is typed (or --yes); ``describe`` is the plan as the operator reads it. A refusal, once
    the plan read the database, has its audit row."""
    from predeploy.commands import restore  # noqa: PLC0415 (pg_restore's machinery)

    chosen = restore.plan(settings, backup, other_database=other_database, run_id=run_id)
    try:
        require_typed(
            chosen.database,
            describe(chosen),
            yes=asking.yes,
            interactive=asking.interactive,
            ask=asking.ask,
            action=f"restoring {chosen.database}",
        )
    except Refused as exc:
        restore.refused(settings, chosen, exc, run_id)
        raise
    return restore.restore(settings, chosen, progress, run_id=run_id)
