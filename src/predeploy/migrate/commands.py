"""The test-only migrate path: ``migrate()``, ``_apply_pending`` and ``MigrateResult``.

No command uses it (``predeploy migrate`` is ``predeploy.commands.migrate``); the tests
that do are being moved onto the command functions, and then this module goes. The verbs
it once held live in ``predeploy.commands`` (status, lint, resolve, new); the helpers in
the module of their concern: ``migrate.history.read_history`` and ``ensure_history``,
``migrate.executor.run_options``, ``db.connect.refuse_standby``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from predeploy._util import lazy
from predeploy.config.settings import Settings
from predeploy.db.connect import Conn, refuse_standby
from predeploy.db.locks import migrate_session
from predeploy.migrate import discovery as migrations
from predeploy.migrate.discovery import Migration
from predeploy.migrate.history import ensure_history, read_history
from predeploy.migrate.plan import make_plan
from predeploy.migrate.status import Status, compare

if TYPE_CHECKING:
    from predeploy.db import target as db_target
    from predeploy.migrate import executor
else:
    db_target = lazy.module("predeploy.db.target")
    executor = lazy.module("predeploy.migrate.executor")

__all__ = ["MigrateResult", "migrate"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class MigrateResult:
    """What a migrate run found and did."""

    before: Status
    applied: tuple[executor.Applied, ...]


def migrate(
    settings: Settings,
    on_applied: Callable[[executor.Applied], None] | None = None,
    session: Conn | None = None,
    found: list[Migration] | None = None,
) -> MigrateResult:
    """Apply every pending migration, one run at a time, each with its history row.

    ``session`` is a connection that already holds the migrate lock (the workflow
    holds it from before its backup to the end); without one, one is opened here.
    """
    found = migrations.discover(settings.migrations_dir) if found is None else found
    target = db_target.of(settings)
    if session is not None:
        return _apply_pending(target, settings.lock_retries, session, found, on_applied)
    with migrate_session(target, "migrate", wait=settings.lock_wait) as conn:
        refuse_standby(conn)
        return _apply_pending(target, settings.lock_retries, conn, found, on_applied)


def _apply_pending(
    target: db_target.Target,
    lock_retries: int,
    conn: Conn,
    found: list[Migration],
    on_applied: Callable[[executor.Applied], None] | None,
) -> MigrateResult:
    table = target.history
    ensure_history(conn, table)
    before = compare(found, read_history(conn, table))
    plan = make_plan(before, target.env_policy)
    plan.refuse()
    with executor.Executor(conn, executor.run_options(target, lock_retries=lock_retries)) as run:
        applied = run.apply_all(plan.pending, on_applied)
    log.info("migrate_done", applied=len(applied), pending_before=len(plan.pending))
    if plan.stop is not None:  # the rest waits behind a migration of the other phase
        raise plan.stop
    return MigrateResult(before=before, applied=tuple(applied))
