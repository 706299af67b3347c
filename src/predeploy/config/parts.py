"""Small frozen parts of the settings: what one lower layer reads, and nothing more.

A library function below the commands takes the part it uses (and a ``Target``), never the
whole ``Settings``; ``Settings`` builds each part from its own fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["BackupSettings", "Pm2Settings"]


@dataclass(frozen=True)
class BackupSettings:
    """What the backups read: where they go, how pg_dump runs, how many are kept."""

    env: str
    backup_dir: Path  # PREDEPLOY_BACKUP_DIR; the env's backups are in its folder <env>/
    lock_wait: float  # PREDEPLOY_LOCK_WAIT: the backup lock, and pg_dump's table locks
    pg_bin_dir: Path | None  # PREDEPLOY_PG_BIN_DIR
    jobs: int  # PREDEPLOY_BACKUP_JOBS (more than 1: a directory dump)
    keep: int  # PREDEPLOY_BACKUP_KEEP (0: no limit)
    max_age_days: float | None  # PREDEPLOY_BACKUP_MAX_AGE_DAYS
    target: str | None = None  # a fleet's target: its backups (and retention) are its own
    schema: str | None = None  # a schema-per-tenant target: only its schema is dumped

    @property
    def folder(self) -> Path:
        """The env's backup folder (a fleet target's: its own folder inside it)."""
        base = self.backup_dir / self.env
        return base if self.target is None else base / "targets" / self.target

    @property
    def where(self) -> tuple[str, ...]:
        """``--env ENV`` (``--target NAME``): where a pasted restore acts."""
        words = ("--env", self.env)
        return words if self.target is None else (*words, "--target", self.target)


@dataclass(frozen=True)
class Pm2Settings:
    """What the pm2 integration reads."""

    app: str | None  # PREDEPLOY_PM2_APP
    program: Path | None  # PREDEPLOY_PM2_BIN
    root: Path  # the project (its node_modules/.bin/pm2)
    wait: float  # PREDEPLOY_DEPLOY_WAIT
