"""The runs that change a database (migrate, deploy, rollback, restore), as the CLI asks
for them: their options from the flags and the terminal. Their results shape their own JSON
(``as_dict``) and carry their ``error`` and ``runbook``: what ``runner.run`` needs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predeploy._util.log import current_run_id
from predeploy.cli import fleet_flags, progress, prompt, verbs
from predeploy.errors import ConfigError

if TYPE_CHECKING:
    from predeploy.commands.gates import Asked
    from predeploy.commands.migrate_report import Options
    from predeploy.commands.restore import RestoreResult
    from predeploy.commands.rollback import Undone
    from predeploy.config.settings import Settings

__all__ = ["asked", "deploying", "migrate_options", "restore", "rollback", "undo_choice"]


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


def deploying(
    options: Options, *, restart: bool, json_output: bool, verbose: bool
) -> tuple[Callable[[Settings], Any], Callable[[Any], str]]:
    """deploy's command and renderer: a single deploy, or (``--fleet``) the fleet's two
    phases around one reload (``cli.fleet_deploy``)."""
    flags = fleet_flags.current()
    if flags.fleet:
        from predeploy.cli import fleet_deploy  # noqa: PLC0415 (fleet deploys only)

        def fleet(s: Settings) -> Any:
            return fleet_deploy.run(s, options, flags, restart=restart, json_output=json_output)

        return fleet, fleet_deploy.render
    from predeploy.cli import render_run  # noqa: PLC0415 (runs only)

    def single(s: Settings) -> Any:
        return verbs.deploy.deploy(
            s, options, current_run_id(), restart=restart, on_step=progress.step_lines(json_output)
        )

    return single, lambda r: render_run.render_deploy(r, verbose=verbose)


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


def rollback(
    settings: Settings,
    migrations: str | None,
    steps: str | None,
    *,
    yes: bool,
    dry_run: bool,
    no_backup: bool,
    json_output: bool,
) -> Undone:
    """`predeploy rollback`: its flags checked, its gate (commands.gates.confirm_undo)."""
    names, count = undo_choice(migrations, steps)
    return verbs.rollback.rollback(
        settings,
        steps=count,
        names=names,
        dry_run=dry_run,
        no_backup=no_backup,
        confirm=verbs.gates.confirm_undo(asked(yes), no_backup=no_backup),
        run_id=current_run_id(),
        progress=progress.progress(json_output),
    )


def restore(
    settings: Settings, backup: str | None, *, yes: bool, other_database: bool, json_output: bool
) -> RestoreResult:
    """`predeploy restore`: after its typed confirmation (commands.gates.restore_confirmed)."""
    from predeploy.cli.render_run import render_restore_plan  # noqa: PLC0415 (restore only)

    return verbs.gates.restore_confirmed(
        settings,
        Path(backup) if backup else None,
        asked(yes),
        render_restore_plan,
        other_database=other_database,
        progress=progress.progress(json_output),
        run_id=current_run_id(),
    )
