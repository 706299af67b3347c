"""One run at a time: a session-level advisory lock, polled on its own connection.

The migrate key is Prisma's (72707369), so predeploy and `prisma migrate`
exclude each other. Polling with pg_try_advisory_lock keeps the wait bounded and
lets us name the holder. The lock lives as long as its session: a killed run
releases it with its connection, so it can never go stale.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
import structlog

from predeploy._util.poll import poll
from predeploy.db.catalog import advisory_holder
from predeploy.db.connect import Conn, migration_session
from predeploy.errors import LockBusy

if TYPE_CHECKING:
    from predeploy.db.target import Target

__all__ = [
    "BACKUP_LOCK",
    "MAINTENANCE_LOCK",
    "MIGRATE_LOCK",
    "ROLLOUT_LOCK",
    "SHADOW_LOCK",
    "advisory_lock",
    "migrate_session",
]

# Every advisory-lock key predeploy takes. One-key locks (objsubid 1) and two-key locks
# (objsubid 2) are separate spaces: SHADOW_LOCK equals MAINTENANCE_LOCK without meeting it.
MIGRATE_LOCK = 72707369  # Prisma's own: predeploy and `prisma migrate` exclude each other
MAINTENANCE_LOCK = 72707370  # migrate's key plus one: a nightly run must not block deploys
BACKUP_LOCK = 72707371  # migrate's key plus two: one backup at a time per database
SHADOW_LOCK = 72707370  # first key of the two-key lock each throwaway shadow database has
ROLLOUT_LOCK = 72707372  # migrate's key plus three: one deploy at a time over an env's hosts
log = structlog.get_logger(__name__)


@contextmanager
def advisory_lock(
    conn: Conn,
    key: int,
    *,
    wait: float,
    purpose: str,
    shared: bool = False,
    schema: str | None = None,
) -> Iterator[None]:
    """Hold session advisory lock ``key`` on ``conn`` for the block; LockBusy after ``wait``.
    ``shared``: its shared form; ``schema``: the two-key lock (``key``, the schema's hash)
    of one schema.

    Take it on the connection that does the work: should this process die, the
    server finishes (or rolls back) what that session sent before it lets the lock
    go, so the next run can never overlap a dying one.
    """
    lock = _Lock(key, shared, schema)
    _acquire(conn, lock, wait=wait, purpose=purpose)
    log.info("lock_acquired", key=key, purpose=purpose, shared=shared, schema=schema)
    try:
        yield
    finally:
        if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            # a connection lost meanwhile took the lock with it: its error must not replace
            # the one the block raised
            with contextlib.suppress(psycopg.OperationalError):
                conn.execute(f"SELECT pg_advisory_unlock{lock.call}", lock.args)
        # otherwise closing the connection releases it


@dataclass(frozen=True)
class _Lock:
    """One advisory lock: ``key``, its shared form, or the two-key lock of one schema."""

    key: int
    shared: bool = False
    schema: str | None = None

    @property
    def args(self) -> tuple[object, ...]:
        return (self.key,) if self.schema is None else (self.key, self.schema)

    @property
    def call(self) -> str:
        """The lock functions' name tail and arguments."""
        if self.schema is not None:
            return "(%s, hashtext(%s))"
        return "_shared(%s)" if self.shared else "(%s)"


@contextmanager
def migrate_session(target: Target, purpose: str, *, wait: float) -> Iterator[Conn]:
    """A migration session on the target's direct URL holding the migrate lock (waited for
    ``wait`` seconds, PREDEPLOY_LOCK_WAIT): runs that change the schema (migrate, rollback,
    resolve, restore) use it."""
    tenant = target.tenant_schema
    with migration_session(target.direct, purpose) as conn, contextlib.ExitStack() as held:
        # a schema-per-tenant target: Prisma's key shared (tenants of one database migrate
        # side by side, a `prisma migrate` of the database still excludes them all), and
        # its own schema's key exclusive
        lock = functools.partial(advisory_lock, conn, MIGRATE_LOCK, wait=wait, purpose=purpose)
        held.enter_context(lock(shared=tenant is not None))
        if tenant is not None:
            held.enter_context(lock(schema=tenant))
        yield conn


def _acquire(conn: Conn, lock: _Lock, *, wait: float, purpose: str) -> None:
    key, schema = lock.key, lock.schema

    def took() -> bool:
        row = conn.execute(f"SELECT pg_try_advisory_lock{lock.call}", lock.args).fetchone()
        return row is not None and bool(row[0])

    announced: list[bool] = []

    def announce(_: bool) -> None:
        if not announced:
            holder = advisory_holder(conn, key, schema)
            log.info("lock_waiting", key=key, schema=schema, holder=holder, wait_s=wait)
            announced.append(True)

    if not poll(took, wait, pause=0.05, grow=2, most=0.5, waiting=announce):
        which = f"{key}" if schema is None else f"{key} of schema {schema}"
        raise LockBusy(
            f"the {purpose} lock (advisory lock {which}) is held by "
            f"{advisory_holder(conn, key, schema)}; waited {wait:g}s (PREDEPLOY_LOCK_WAIT): "
            f"let that run finish, or end that session if it is stuck"
        )
