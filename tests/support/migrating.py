"""`predeploy migrate` in-process: the same command function the CLI calls, unattended.

The tests in tests/db apply migrations through this, so what they prove holds for the real
run (history, lint, privileges, blockers, apply, post-apply checks, the audit row): there is
no second, test-only way to migrate.
"""

from __future__ import annotations

from collections.abc import Callable

from predeploy._util.log import new_run_id
from predeploy.commands import migrate as command
from predeploy.commands import migrate_report
from predeploy.config.settings import Settings

__all__ = ["migrate"]


def migrate(
    settings: Settings,
    *,
    on_applied: Callable[[str], None] | None = None,
    backup: bool = False,
) -> migrate_report.Report:
    """Apply the pending migrations as `predeploy migrate --yes [--no-backup]` does; raises
    the run's error (the typed one the CLI maps to an exit code). ``on_applied`` is called
    with the name of each migration once it is applied, before the next one starts."""
    applying = _following(on_applied)
    options = migrate_report.Options(yes=True, no_backup=not backup, applying=applying)
    report = command.migrate(settings, options, new_run_id())
    if report.error is not None:
        raise report.error
    return report


def _following(
    on_applied: Callable[[str], None] | None,
) -> Callable[[str | None, int, int], None] | None:
    """The run's `applying` hook (the migration that starts now), as ``on_applied``: names
    are learnt as they start; each earlier one is applied by then."""
    if on_applied is None:
        return None
    names: list[str] = []
    told = 0

    def applying(name: str | None, place: int, _total: int) -> None:
        nonlocal told
        if name is not None:
            names.append(name)
        done = place if name is None else place - 1
        for finished in names[told:done]:
            on_applied(finished)
        told = max(told, done)

    return applying
