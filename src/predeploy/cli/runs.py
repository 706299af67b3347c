"""The runs that change a database (migrate, deploy, maintenance, rollback, restore), as
the CLI asks for them and shows them: their options from the flags and the terminal, and
for the reports that do not yet carry them, their JSON (``as_dict``), their ``error`` and
their ``runbook``: what ``runner.run`` needs of any result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from predeploy._util.log import current_run_id
from predeploy.cli import progress, prompt, verbs
from predeploy.errors import ConfigError, PredeployError

if TYPE_CHECKING:
    from predeploy.commands.deploy import DeployReport
    from predeploy.commands.gates import Asked
    from predeploy.commands.maintenance import MaintenanceReport
    from predeploy.commands.migrate_report import Options
    from predeploy.commands.restore import RestoreResult
    from predeploy.commands.rollback import Undone
    from predeploy.commands.runbook import Runbook
    from predeploy.config.settings import Settings

__all__ = [
    "Ended",
    "asked",
    "deployed",
    "maintained",
    "migrate_options",
    "restore",
    "restored",
    "rollback",
    "rolled_back",
    "undo_choice",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Ended(Generic[T]):
    """A run's report as the CLI ends it: its JSON, its error, its runbook."""

    report: T
    data: dict[str, Any]
    error: PredeployError | None = None
    runbook: Runbook | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.data


def asked(yes: bool) -> Asked:
    """--yes, and the terminal to ask on (if any)."""
    from predeploy.commands.gates import Asked  # noqa: PLC0415 (runs only)

    return Asked(yes=yes, interactive=prompt.interactive(), ask=prompt.ask)


def migrate_options(json_output: bool, **flags: bool) -> Options:
    """migrate's and deploy's options: the flags, the terminal, the progress lines."""
    from predeploy.commands.migrate_report import Options  # noqa: PLC0415 (runs only)

    return Options(
        interactive=prompt.interactive(),
        ask=prompt.ask,
        progress=progress.progress(json_output),
        applying=progress.applying(json_output),
        **flags,
    )


def deployed(report: DeployReport) -> Ended[DeployReport]:
    runbook = report.runbook or (report.migrate.runbook if report.migrate else None)
    return Ended(report, report.as_dict(), report.error, runbook)


def maintained(report: MaintenanceReport) -> Ended[MaintenanceReport]:
    """Exit 0 when all is well, 1 when something needs a human, or the failed step's."""
    error = None
    if report.exit_code:
        error = PredeployError(
            f"maintenance needs attention: {'; '.join(report.needs_attention)}"
        )
        error.exit_code = report.exit_code
    return Ended(report, report.as_dict(), error)


def undo_choice(migrations: str | None, steps: str | None) -> tuple[list[str] | None, int | None]:
    """rollback's --migrations NAMES or --steps N, checked."""
    if migrations is not None and steps is not None:
        raise ConfigError(
            "give one of --migrations NAMES or --steps N, not both: they choose differently"
        )
    names = None
    if migrations is not None:
        names = [n.strip() for n in migrations.split(",") if n.strip()]
        if not names:
            raise ConfigError(
                "--migrations is empty: name the migrations to undo, comma-separated "
                "(see predeploy status), or use --steps N"
            )
    if steps is not None and (not steps.strip().isdigit() or int(steps) < 1):
        raise ConfigError(f"--steps {steps!r} must be a whole number, 1 or more")
    return names, None if steps is None else int(steps)


def rolled_back(done: Undone, *, dry_run: bool) -> Ended[Undone]:
    names = set(done.undone_names())
    undone = [
        {"name": i.migration.name, "down": str(i.migration.down_path), "sql": i.down.text}
        for i in done.chosen
        if dry_run or i.migration.name in names
    ]
    failure = {} if done.error is None else {
        "error": done.error.message, "exit_code": done.error.exit_code
    }  # fmt: skip
    data = {
        "dry_run": dry_run,
        "rolled_back": [] if dry_run else undone,
        "would_undo": undone if dry_run else [],
        "backup": done.backup.as_dict() if done.backup else None,
        "runbook": done.runbook.commands if done.runbook else [],
        "policy": done.policy.describe(),
        **failure,
    }
    return Ended(done, data, done.error, done.runbook)


def restored(result: RestoreResult) -> Ended[RestoreResult]:
    data = {
        "backup": str(result.backup),
        "database": result.database,
        "seconds": round(result.seconds, 3),
        "dropped": list(result.dropped),
    }
    return Ended(result, data)


def rollback(
    settings: Settings,
    migrations: str | None,
    steps: str | None,
    *,
    yes: bool,
    dry_run: bool,
    no_backup: bool,
    json_output: bool,
) -> Ended[Undone]:
    """`predeploy rollback`: its flags checked, its gate (commands.gates.confirm_undo)."""
    names, count = undo_choice(migrations, steps)
    done = verbs.rollback.rollback(
        settings,
        steps=count,
        names=names,
        dry_run=dry_run,
        no_backup=no_backup,
        confirm=verbs.gates.confirm_undo(asked(yes), no_backup=no_backup),
        run_id=current_run_id(),
        progress=progress.progress(json_output),
    )
    return rolled_back(done, dry_run=dry_run)


def restore(
    settings: Settings, backup: str | None, *, yes: bool, other_database: bool, json_output: bool
) -> Ended[RestoreResult]:
    """`predeploy restore`: after its typed confirmation (commands.gates.restore_confirmed)."""
    from predeploy.cli.render_run import render_restore_plan  # noqa: PLC0415 (restore only)

    result = verbs.gates.restore_confirmed(
        settings,
        Path(backup) if backup else None,
        asked(yes),
        render_restore_plan,
        other_database=other_database,
        progress=progress.progress(json_output),
        run_id=current_run_id(),
    )
    return restored(result)
