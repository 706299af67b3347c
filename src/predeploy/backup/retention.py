"""The backups of an env: listing them, checking their checksums, pruning the old ones.

A backup is a dump with a predeploy manifest beside it; nothing else is ever listed or
deleted. "Verified" means its sha256 was checked when it was made (pg_restore read it
whole); the listing says when the checksum was last checked again and with what result,
and ``check`` rechecks it. Retention never deletes the backup just made.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from predeploy._util import atomic
from predeploy.backup.archive import digest, manifest_path, size_of
from predeploy.backup.manifest import Manifest
from predeploy.config.parts import BackupSettings
from predeploy.errors import BackupError

__all__ = [
    "BackupInfo",
    "backup_at",
    "check",
    "list_backups",
    "mismatches",
    "newest",
    "prune",
    "scope_mismatch",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class BackupInfo:
    """A backup known by its manifest."""

    path: Path
    manifest: Manifest
    created_at: datetime
    present: bool  # the dump is on disk with the manifest's size

    @property
    def verified(self) -> bool:
        """Its sha256 was checked when it was made, it is still there at its size, and no
        later check found it different."""
        rechecked = self.manifest.check
        return self.present and self.manifest.verified and rechecked in (None, "ok")

    @property
    def last_check(self) -> str:
        """'ok', 'MISMATCH' or 'missing' as of ``checked_at``; 'at creation' if never rechecked."""
        return self.manifest.check or "at creation"

    def as_dict(self) -> dict[str, Any]:
        manifest = self.manifest
        return {
            "path": str(self.path),
            "created_at": self.created_at.isoformat(),
            "reason": manifest.reason,
            "size": manifest.size,
            "sha256": manifest.sha256,
            "database": manifest.database,
            "schema": manifest.schema,
            "env": manifest.env,
            "latest_migration": manifest.latest_migration,
            "applied_migrations": manifest.applied_migrations,
            "verified": self.verified,
            "present": self.present,
            "checked_at": manifest.checked_at,
            "last_check": self.last_check,
        }


def list_backups(settings: BackupSettings) -> list[BackupInfo]:
    """The env's backups, newest first."""
    folder = settings.folder
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.dump.json"):
        info = _read(path)
        if info is not None:
            found.append(info)
    return sorted(found, key=lambda b: b.created_at, reverse=True)


def backup_at(dump: Path) -> BackupInfo | None:
    """The backup ``dump``, in any folder, as the predeploy manifest beside it describes it;
    None when there is no such manifest (or it names another file)."""
    manifest = manifest_path(dump)
    return _read(manifest) if manifest.is_file() else None


def newest(settings: BackupSettings, database: str, identifier: str | None) -> BackupInfo:
    """The newest backup of ``database`` (on the server of system ``identifier``) in the
    env's folder, which other databases may share: never another database's, never an
    older one of its own in place of a newest that turns out damaged (the caller checks)."""
    found = [b for b in list_backups(settings) if scope_mismatch(b, settings.schema) is None]
    folder = settings.folder
    mine = [b for b in found if not mismatches(b, settings.env, database, identifier)]
    if mine:
        return mine[0]
    make = f"make one (predeploy backup {' '.join(settings.where)})"
    if not found:
        raise BackupError(
            f"no backup of env {settings.env} in {folder}: {make} or name a file with --backup"
        )
    why = "; ".join(mismatches(found[0], settings.env, database, identifier))
    raise BackupError(
        f"no backup of {database} in {folder}: none of the {len(found)} there is this "
        f"database's (the newest, {found[0].path.name}: {why}); {make}, or name a dump "
        f"with --backup"
    )


def mismatches(info: BackupInfo, env: str, database: str, identifier: str | None) -> list[str]:
    """What ``info``'s manifest says differently from the target: another database, env or
    server (system identifier); [] for a backup of this database."""
    manifest = info.manifest
    found = []
    if manifest.database not in (None, database):
        found.append(f"it holds database {manifest.database}, the target is {database}")
    if manifest.env not in (None, env):
        found.append(f"it was taken in env {manifest.env}, this is env {env}")
    theirs = manifest.system_identifier
    if theirs and identifier and theirs != identifier:
        found.append(
            f"it comes from another server (system identifier {theirs}, here {identifier})"
        )
    return found


def scope_mismatch(info: BackupInfo, schema: str | None) -> str | None:
    """How ``info``'s scope (a schema's dump, or the whole database's) differs from a
    target's (``schema``: a schema-per-tenant target's); None when they are the same."""
    theirs = info.manifest.schema
    if theirs == schema:
        return None
    if theirs is None:
        return f"it holds the whole database, the target is schema {schema} alone"
    if schema is None:
        return f"it holds schema {theirs} alone, the target is the whole database"
    return f"it holds schema {theirs}, the target is schema {schema}"


def check(info: BackupInfo) -> BackupInfo:
    """Recompute ``info``'s sha256 and record the result and time in its manifest."""
    if not info.path.exists():
        result = "missing"
    else:
        sha256, _ = digest(info.path)
        result = "ok" if sha256 == info.manifest.sha256 else "MISMATCH"
    now = datetime.now(UTC).isoformat()
    data = dataclasses.replace(info.manifest, check=result, checked_at=now)
    atomic.write_json(manifest_path(info.path), data.as_json())
    log.info("backup_checked", path=str(info.path), result=result)
    return BackupInfo(info.path, data, info.created_at, info.present and result != "missing")


def prune(settings: BackupSettings, *, keep: Path, now: datetime | None = None) -> list[Path]:
    """Delete backups beyond PREDEPLOY_BACKUP_KEEP or older than PREDEPLOY_BACKUP_MAX_AGE_DAYS.

    ``keep`` (the backup just made and verified) is never deleted. Returns the deleted ones.
    """
    now = now or datetime.now(UTC)
    doomed = []
    good = 0  # a damaged backup (its checksum found to differ, or gone) does not count
    for info in _same_database(settings, keep):
        damaged = info.last_check in ("MISMATCH", "missing") or not info.present
        too_many = settings.keep > 0 and good >= settings.keep
        good += 0 if damaged else 1
        max_age = settings.max_age_days
        too_old = max_age is not None and now - info.created_at > timedelta(days=max_age)
        if (too_many or too_old) and info.path != keep:
            doomed.append(info)
    for info in doomed:
        if info.path.is_dir():
            shutil.rmtree(info.path, ignore_errors=True)
        else:
            info.path.unlink(missing_ok=True)
        manifest_path(info.path).unlink(missing_ok=True)
        log.info("backup_pruned", path=str(info.path), created_at=info.created_at.isoformat())
    return [info.path for info in doomed]


def _same_database(settings: BackupSettings, made: Path) -> list[BackupInfo]:
    """The env's backups of the database (and schema) ``made`` is a backup of: the folder
    may be shared (one PREDEPLOY_BACKUP_DIR for several apps), and each database (each
    schema of a schema-per-tenant database) keeps its own N."""
    info = backup_at(made)
    found = list_backups(settings)
    if info is None:
        return found
    found = [b for b in found if scope_mismatch(b, info.manifest.schema) is None]
    database, identifier = info.manifest.database, info.manifest.system_identifier
    if not isinstance(database, str):
        return found
    return [b for b in found if not mismatches(b, settings.env, database, identifier)]


def _read(manifest: Path) -> BackupInfo | None:
    try:
        data = Manifest.from_json(json.loads(manifest.read_text()))
        dump = manifest.with_name(data.file)
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("backup_manifest_unreadable", path=str(manifest))
        return None
    if dump.name + ".json" != manifest.name:
        return None  # a manifest that names another file is not one of ours
    present = dump.exists() and size_of(dump) == data.size
    return BackupInfo(path=dump, manifest=data, created_at=data.created_at, present=present)
