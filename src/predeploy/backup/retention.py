"""The backups of an env: listing them, and pruning the old ones.

Only dumps with a predeploy manifest are ever listed as backups or deleted; the
newest verified backup is never deleted, whatever the settings say.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from predeploy.backup.archive import manifest_path, size_of
from predeploy.config.settings import Settings
from predeploy.errors import BackupError

__all__ = ["BackupInfo", "list_backups", "newest_verified", "prune"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class BackupInfo:
    """A backup known by its manifest."""

    path: Path
    manifest: dict[str, Any]
    created_at: datetime
    present: bool  # the dump is on disk with the manifest's size

    @property
    def verified(self) -> bool:
        return self.present and bool(self.manifest.get("verified"))

    def as_dict(self) -> dict[str, Any]:
        migrations = self.manifest.get("migrations") or {}
        return {
            "path": str(self.path),
            "created_at": self.created_at.isoformat(),
            "reason": self.manifest.get("reason"),
            "size": self.manifest.get("size"),
            "sha256": self.manifest.get("sha256"),
            "database": self.manifest.get("database"),
            "latest_migration": migrations.get("latest"),
            "applied_migrations": migrations.get("applied"),
            "verified": self.verified,
            "present": self.present,
        }


def list_backups(settings: Settings) -> list[BackupInfo]:
    """The env's backups, newest first."""
    folder = settings.backup_dir / settings.env
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.dump.json"):
        info = _read(path)
        if info is not None:
            found.append(info)
    return sorted(found, key=lambda b: b.created_at, reverse=True)


def newest_verified(settings: Settings) -> BackupInfo:
    for info in list_backups(settings):
        if info.verified:
            return info
    raise BackupError(
        f"no verified backup of env {settings.env} in {settings.backup_dir / settings.env}: "
        f"make one (invoke backup --env {settings.env}) or name a file with --backup"
    )


def prune(settings: Settings, now: datetime | None = None) -> list[Path]:
    """Delete backups beyond PREDEPLOY_BACKUP_KEEP or older than PREDEPLOY_BACKUP_MAX_AGE_DAYS.

    Returns the deleted ones.
    """
    now = now or datetime.now(UTC)
    backups = list_backups(settings)
    keep_newest = next((b for b in backups if b.verified), None)
    doomed = []
    for index, info in enumerate(backups):
        too_many = settings.backup_keep > 0 and index >= settings.backup_keep
        max_age = settings.backup_max_age_days
        too_old = max_age is not None and now - info.created_at > timedelta(days=max_age)
        if (too_many or too_old) and info is not keep_newest:
            doomed.append(info)
    for info in doomed:
        if info.path.is_dir():
            shutil.rmtree(info.path, ignore_errors=True)
        else:
            info.path.unlink(missing_ok=True)
        manifest_path(info.path).unlink(missing_ok=True)
        log.info("backup_pruned", path=str(info.path), created_at=info.created_at.isoformat())
    return [info.path for info in doomed]


def _read(manifest: Path) -> BackupInfo | None:
    try:
        data = json.loads(manifest.read_text())
        created = datetime.fromisoformat(data["created_at"])
        dump = manifest.with_name(data["file"])
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("backup_manifest_unreadable", path=str(manifest))
        return None
    if dump.name + ".json" != manifest.name:
        return None  # a manifest that names another file is not one of ours
    present = dump.exists() and size_of(dump) == data.get("size")
    return BackupInfo(path=dump, manifest=data, created_at=created, present=present)
