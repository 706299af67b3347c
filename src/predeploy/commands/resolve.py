"""`predeploy resolve`: Prisma's `migrate resolve`, marking a failed migration rolled back
or a hand-applied one applied."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import structlog

from predeploy.config.settings import Settings
from predeploy.db import target as db_target
from predeploy.db.connect import refuse_standby
from predeploy.db.failures import translated
from predeploy.db.locks import migrate_session
from predeploy.errors import ConfigError
from predeploy.migrate import discovery, history
from predeploy.migrate.discovery import Migration
from predeploy.migrate.history import ensure_history, read_history, role
from predeploy.migrate.privileges import RESOLVE, check_bookkeeping
from predeploy.migrate.status import Entry, compare

__all__ = ["Resolved", "resolve"]

log = structlog.get_logger(__name__)
Marked = Literal["applied", "rolled_back"]


@dataclass(frozen=True)
class Resolved:
    migration: str
    marked: Marked

    def as_dict(self) -> dict[str, Any]:
        return {"migration": self.migration, "marked": self.marked}


def resolve(settings: Settings, *, applied: str | None, rolled_back: str | None) -> Resolved:
    """Prisma's `migrate resolve`: mark a failed migration rolled back, or one applied."""
    if (applied is None) == (rolled_back is None):
        raise ConfigError("give exactly one of --applied NAME or --rolled-back NAME")
    name = applied or rolled_back or ""
    found = discovery.discover(settings.migrations_dir)
    target = db_target.of(settings)
    table, audit_table = target.history, target.audit
    with migrate_session(target, "resolve", wait=settings.lock_wait) as conn:
        refuse_standby(conn)
        check_bookkeeping(
            conn, table, audit_table, needs=RESOLVE, audited=False, then="nothing was marked"
        )
        ensure_history(conn, table)
        entries = compare(found, read_history(conn, table)).entries
        entry = next((e for e in entries if e.name == name), None)
        grant = f"GRANT INSERT, UPDATE ON TABLE {table.regclass} TO {role(conn)}"
        with translated(conn, f"marking {name} in {table}", grant=grant), conn.transaction():
            outcome: Marked
            if rolled_back is not None:
                _rolled_back_only(entry, name)
                history.mark_rolled_back(conn, table, name)
                outcome = "rolled_back"
            else:
                migration = _resolvable(entry, name)
                history.mark_rolled_back(conn, table, name)
                history.mark_applied(conn, table, migration)
                outcome = "applied"
    log.info("migration_resolved", migration=name, outcome=outcome)
    return Resolved(name, outcome)


def _rolled_back_only(entry: Entry | None, name: str) -> None:
    if entry is None or entry.state != "failed":
        state = entry.state if entry else "unknown"
        raise ConfigError(
            f"migration {name} is not failed ({state}): only a failed migration "
            f"can be marked rolled back"
        )


def _resolvable(entry: Entry | None, name: str) -> Migration:
    if entry is None or entry.migration is None:
        raise ConfigError(f"migration {name} is not in the migrations folder: check the name")
    if entry.state in ("applied", "edited"):
        raise ConfigError(f"migration {name} is already applied: nothing to resolve")
    return entry.migration
