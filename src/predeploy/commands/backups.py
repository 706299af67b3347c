"""`predeploy backups`: the env's backups; with ``check``, each sha256 recomputed (exit 1
when one differs or is gone)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from predeploy._util import lazy
from predeploy.config.settings import Settings
from predeploy.errors import CheckFailed

if TYPE_CHECKING:
    from predeploy.backup import retention
else:
    retention = lazy.module("predeploy.backup.retention")

__all__ = ["Listed", "backups"]


@dataclass(frozen=True)
class Listed:
    found: list[retention.BackupInfo]
    checked: bool = False

    @property
    def damaged(self) -> list[retention.BackupInfo]:
        return [b for b in self.found if b.last_check in ("MISMATCH", "missing")]

    @property
    def error(self) -> CheckFailed | None:
        damaged = self.damaged if self.checked else []
        if not damaged:
            return None
        return CheckFailed(
            f"{len(damaged)} backup(s) fail their checksum: "
            + ", ".join(str(b.path) for b in damaged)
        )

    def as_dict(self) -> dict[str, Any]:
        return {"backups": [b.as_dict() for b in self.found]}


def backups(settings: Settings, *, check: bool = False) -> Listed:
    """The env's backups, newest first; with ``check``, each one's sha256 recomputed."""
    found = retention.list_backups(settings.backup)
    return Listed([retention.check(b) for b in found] if check else found, check)
