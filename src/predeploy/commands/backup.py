"""`predeploy backup`: a verified pg_dump of the env's database, kept with its manifest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from predeploy._util import lazy
from predeploy.config.settings import Settings
from predeploy.db import target as db_target

if TYPE_CHECKING:
    from predeploy.backup import dump
else:  # pg_dump's machinery only when backing up
    dump = lazy.module("predeploy.backup.dump")

__all__ = ["BackedUp", "backup"]


@dataclass(frozen=True)
class BackedUp:
    """`predeploy backup`'s result: the whole of the backup, where a run's report
    (``BackupResult.as_dict``) names only the dump, its checksum and size."""

    result: dump.BackupResult

    def fleet_outcome(self) -> str:
        """A target's word in a fleet's backup (a failed dump is the fleet's ``failed``)."""
        return "backed up"

    def fleet_detail(self) -> dict[str, Any]:
        return {"backup": str(self.result.path)}

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "path": str(r.path),
            "manifest": str(r.manifest),
            "sha256": r.sha256,
            "size": r.size,
            "seconds": round(r.seconds, 3),
            "dump_seconds": round(r.dump_seconds, 3),
            "verify_seconds": round(r.verify_seconds, 3),
            "tables": r.tables,
            "format": r.format,
            "pruned": [str(p) for p in r.pruned],
        }


def backup(
    settings: Settings, *, reason: str = "manual", progress: dump.ProgressFn | None = None
) -> BackedUp:
    """Dump the database, verify the dump, keep it with a manifest (and prune by retention)."""
    return BackedUp(
        dump.backup(db_target.of(settings), settings.backup, reason=reason, progress=progress)
    )
