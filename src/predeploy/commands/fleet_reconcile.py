"""What an interrupted target committed that its run never heard of.

A worker stops by an interrupt raised in its thread; when that strikes while a batch of
migrations is in flight (one pipeline, each migration its own transaction), the server may
have committed the first ones before the connection was closed, and the run, which never
read those results, does not list them. The fleet asks the target's history once: a
migration that was pending when the run began and is applied now was applied by it.
Its undo joins the target's runbook section and its result.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import structlog

from predeploy._util.pasted import command
from predeploy.config.settings import Settings
from predeploy.db import target as db_target
from predeploy.db.connect import catalog_session
from predeploy.errors import PredeployError
from predeploy.migrate import history

if TYPE_CHECKING:
    from predeploy.commands.fleet_report import TargetResult

__all__ = ["unreported"]

log = structlog.get_logger(__name__)


def unreported(settings: Settings, done: Any, result: TargetResult) -> None:
    """Adds to ``result`` (applied, runbook) what ``done`` (a migrate's report) left out."""
    pending = list(getattr(done, "pending", None) or [])
    unknown = [p for p in pending if p.name not in result.applied]
    if not unknown:
        return
    try:
        applied = _applied_now(settings)
    except (PredeployError, OSError) as exc:  # unreachable now: say what cannot be known
        result.runbook.append(f"# could not check what else was committed: {exc}")
        return
    found = [p for p in unknown if p.name in applied]
    if not found:
        return
    names = [p.name for p in found]
    log.warning("fleet_unreported_commits", migrations=names)
    result.applied += names
    result.runbook[:0] = _undo(settings, result.name, found)  # newer: undone first


def _applied_now(settings: Settings) -> set[str]:
    target = db_target.of(settings)
    with contextlib.closing(catalog_session(target.direct, purpose="fleet")) as conn:
        rows = history.read_history(conn, target.history)
    return {r.migration_name for r in rows if r.finished_at and r.rolled_back_at is None}


def _undo(settings: Settings, name: str, found: list[Any]) -> list[str]:
    names = [p.name for p in found]
    lines = [
        f"# also committed before the interrupt (not in this target's audit row): "
        f"{', '.join(names)}; undo it first:"
    ]
    if all(getattr(p, "has_down", False) for p in found):
        newest_first = ",".join(reversed(names))
        words = ("rollback", "--env", settings.env, "--target", name, "--migrations")
        lines.append(command(*words, newest_first, "--yes"))
    else:
        lines.append("# not each has a down.sql: the backup's restore below undoes them too")
    return lines
