"""The rollback runbook: the exact commands that undo this run, to paste as printed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from predeploy.backup.dump import BackupResult
from predeploy.config.settings import Settings
from predeploy.errors import PredeployError
from predeploy.migrate.executor import Applied, MigrationFailed

__all__ = ["Runbook", "build_runbook", "write_runbook"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Runbook:
    commands: list[str]  # comments (#) explain, the other lines are commands
    path: Path | None

    def text(self) -> str:
        return "\n".join(self.commands)


def build_runbook(
    settings: Settings,
    *,
    backup: BackupResult | None,
    applied: list[Applied],
    error: PredeployError | None,
    run_id: str,
    has_down: dict[str, bool],
) -> Runbook:
    """The commands, written to logs/runbook-<env>-<run id>.txt as well."""
    env, lines = settings.env, []
    pm2 = settings.pm2_app
    if isinstance(error, MigrationFailed) and error.left_failed:
        lines += [
            f"# {error.name} stopped part-way and is recorded as failed: check what it changed,",
            "# then mark it, fix migration.sql and migrate again:",
            f"invoke resolve --env {env} --rolled-back {error.name}",
        ]
    if applied:
        if all(has_down.get(a.name) for a in applied):
            lines += [
                f"# undo the {len(applied)} migration(s) this run applied, with their down.sql:",
                f"invoke rollback --env {env} --steps {len(applied)} --yes",
            ]
        else:
            missing = [a.name for a in applied if not has_down.get(a.name)]
            lines.append(f"# no down.sql for {', '.join(missing)}: undo by restoring the backup")
    if backup is not None:
        lines.append("# or bring the whole database back to the moment before this run:")
        if pm2:
            lines.append(f"pm2 stop {pm2}")
        lines.append(f"invoke restore --env {env} --backup {backup.path} --yes")
        if pm2:
            lines.append(f"pm2 start {pm2}")
    elif applied:
        lines.append("# no backup was taken by this run")
    return write_runbook(settings, run_id, lines)


def write_runbook(settings: Settings, run_id: str, lines: list[str]) -> Runbook:
    """The runbook of ``lines``, also written to logs/runbook-<env>-<run id>.txt."""
    path = settings.log_dir / f"runbook-{settings.env}-{run_id}.txt"
    try:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    except OSError as exc:
        log.warning("runbook_not_written", path=str(path), detail=exc.strerror)
        return Runbook(lines, None)
    return Runbook(lines, path)
