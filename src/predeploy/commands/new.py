"""`predeploy new`: a new migration folder with migration.sql and down.sql (comments only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from predeploy.config.settings import Settings
from predeploy.migrate import discovery
from predeploy.migrate.discovery import Migration

__all__ = ["NOTE", "Created", "new"]

log = structlog.get_logger(__name__)
NOTE = (
    "both files hold only comments: write the SQL before migrating (a migration "
    "without statements is refused; a down.sql without them counts as none)"
)


@dataclass(frozen=True)
class Created:
    """`predeploy new`'s result: the migration folder made."""

    migration: Migration

    def as_dict(self) -> dict[str, Any]:
        m = self.migration
        return {
            "name": m.name,
            "phase": m.phase,
            "folder": str(m.folder),
            "files": [str(m.sql_path), str(m.folder / "down.sql")],
            "note": NOTE,
        }


def new(settings: Settings, name: str, *, post_deploy: bool = False) -> Created:
    """Create a new migration folder with migration.sql and down.sql."""
    migration = discovery.create(settings.migrations_dir, name, post_deploy=post_deploy)
    log.info("migration_created", migration=migration.name, folder=str(migration.folder))
    return Created(migration)
