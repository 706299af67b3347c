"""`predeploy restore`: a backup checked first, applied whole and atomically, nothing newer left.

The plan (shown before the typed confirmation) names the backup, its database, env,
time and migration state, and what it replaces. A backup is refused when its checksum
does not match its manifest (restore never falls back to another one on its own), and
when its manifest names another database, env or server, unless ``--other-database``. A
schema-per-tenant target's backup holds its schema alone and restores that schema alone;
it is refused on a target of another schema, and a whole database's backup on a schema's
target (exit 2, even with ``--other-database``: pg_restore cannot move a schema).

The replay itself (one transaction: every object the backup lacks dropped, the archive
replayed) is ``predeploy.backup.restore``. The audit table is kept out of it, and so is
the schema that holds it (Prisma's ``?schema=``, or public): the trail of runs survives a
restore, and so does the marker of a protected env on it (``predeploy.db.protection``); a
protected env marks it again after the replay. Its audit row and notification come from
the run's ``Lifecycle``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from predeploy._util.sweep import sweep_temp_files
from predeploy.backup import restore as replaying
from predeploy.backup.progress import ProgressFn
from predeploy.backup.retention import BackupInfo, mismatches, newest, scope_mismatch
from predeploy.commands.run import Lifecycle
from predeploy.config.policy import Policy
from predeploy.config.settings import Settings
from predeploy.db import protection
from predeploy.db import target as db_target
from predeploy.db.catalog import user_tables
from predeploy.db.connect import Conn, catalog_session, refuse_standby
from predeploy.db.failures import translated
from predeploy.db.locks import migrate_session
from predeploy.errors import BackupError, ConfigError, PredeployError
from predeploy.migrate import history
from predeploy.migrate.privileges import check_bookkeeping

__all__ = ["RestorePlan", "RestoreResult", "plan", "refused", "restore"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RestorePlan:
    """What a restore will replace, for the operator to confirm."""

    backup: BackupInfo
    database: str
    target: str
    env: str
    current_tables: int
    current_latest_migration: str | None
    mismatches: tuple[str, ...]  # what the manifest says differently from the target
    policy: str = ""  # the policy that applies to the target, and why
    schema: str | None = None  # a schema-per-tenant target's: only that schema is replaced


@dataclass(frozen=True)
class RestoreResult:
    """What a restore replaced: from which backup, how long, what it dropped."""

    backup: Path
    database: str
    seconds: float
    dropped: tuple[str, ...]
    schema: str | None = None  # a schema-per-tenant target's restore: that schema alone

    @property
    def error(self) -> None:
        """A restore that returns went well: its failures are raised."""
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "backup": str(self.backup),
            "database": self.database,
            "seconds": round(self.seconds, 3),
            "dropped": list(self.dropped),
        } | ({} if self.schema is None else {"schema": self.schema})


def plan(
    settings: Settings, path: Path | None, *, other_database: bool = False, run_id: str = ""
) -> RestorePlan:
    """The backup to restore (the newest of this database by default), checked, and what it
    replaces; a backup of another database is refused, with an audit row (``refused``), and
    so is a damaged or missing one (with its failure notification too)."""
    where = " ".join(settings.backup.where)  # --env ENV (--target NAME)
    named = None if path is None else replaying.named(where, path)
    target = db_target.of(settings)
    url, table = target.url, target.history
    scope = settings.backup.schema  # a schema-per-tenant target: that schema alone
    with catalog_session(target.direct, purpose="restore") as conn:
        refuse_standby(conn)
        with translated(conn, f"reading {conn.info.dbname} before the restore", error=BackupError):
            tables = [t for t in user_tables(conn) if scope is None or t[0] == scope]
            latest, _ = history.latest_applied(history.read(conn, table))
        identity = db_target.identify(conn, target)
        database, identifier = identity.database, identity.system_identifier
        policy = protection.policy_of(target, conn)
    info = named or newest(settings.backup, database, identifier)  # by default: this database's
    try:
        replaying.check_file(info, where, default=named is None)
    except BackupError as damaged:  # a damaged backup is news: its row, and its message
        _announce(_refused(settings, info, damaged, run_id), info, policy)
        raise
    found = _fitting(settings, info, (database, identifier), other_database, run_id)
    return RestorePlan(
        backup=info,
        database=database,
        target=str(url),
        env=settings.env,
        current_tables=len(tables),
        current_latest_migration=latest,
        mismatches=tuple(found),
        policy=policy.describe(),
        schema=scope,
    )


def _fitting(
    settings: Settings,
    info: BackupInfo,
    here: tuple[str, str | None],
    other_database: bool,
    run_id: str,
) -> list[str]:
    """What ``info``'s manifest says differently from the database ``here`` (its name and
    system identifier); a backup of another scope, or of another database without
    ``other_database``, is refused with its audit row."""
    _refuse_other_scope(settings, info, run_id)
    database, identifier = here
    found = mismatches(info, settings.env, database, identifier)
    if found and not other_database:
        error = BackupError(
            f"{info.path} is not a backup of this database: {'; '.join(found)}; nothing "
            f"was restored (pass --other-database to restore it into {database} anyway)"
        )
        error.refused_by = "another database's backup"
        _refused(settings, info, error, run_id)
        raise error
    return found


def _refuse_other_scope(settings: Settings, info: BackupInfo, run_id: str) -> None:
    """A schema's backup restores into that schema's target alone, and a whole database's
    never into one schema's target (it would roll every tenant back), even with
    --other-database."""
    why = scope_mismatch(info, settings.backup.schema)
    if why is None:
        return
    theirs = info.manifest.schema
    if theirs is None:
        fix = "restore it without --target, which brings back every schema"
    else:
        fix = f"restore it with --target naming the target of schema {theirs}"
    error = ConfigError(
        f"{info.path} does not fit this target: {why}; nothing was restored ({fix})"
    )
    error.refused_by = "another schema's backup"
    _refused(settings, info, error, run_id)
    raise error


def restore(
    settings: Settings, chosen: RestorePlan, progress: ProgressFn | None = None, run_id: str = ""
) -> RestoreResult:
    """Restore ``chosen`` into the env's database (the caller has confirmed)."""
    info = chosen.backup
    target = db_target.of(settings)
    history_table, audit_table = target.history, target.audit
    started = time.perf_counter()
    sweep_temp_files()  # the list files of restores killed with SIGKILL
    life = _life(settings, info, run_id)
    with migrate_session(target, "restore", wait=settings.lock_wait) as conn:
        refuse_standby(conn)
        with translated(conn, "reading what the database remembers of its env"):
            policy = protection.policy_of(target, conn, say=False)  # the plan said it
        # its audit row is written after the replay: a missing GRANT is said before it
        check_bookkeeping(conn, history_table, audit_table, needs=(), then="nothing was restored")
        keep = [(audit_table.schema, audit_table.name)]
        prepared = replaying.prepare(settings.backup, conn, info, keep)
        log.info(
            "restore_started",
            backup=str(info.path),
            database=chosen.database,
            drops=len(prepared.extra),
        )
        name = f"predeploy restore {run_id}".strip()
        with _audited(life, conn, info, policy):
            replaying.replay(
                settings.backup,
                conn,
                prepared,
                info,
                at=target.direct,
                name=name,
                progress=progress,
            )
        if policy.marks:  # the replay may carry the backup's own marker: this run's wins
            protection.mark(conn, audit_table, env=settings.env, command="restore", run_id=run_id)
    seconds = time.perf_counter() - started
    dropped = tuple(str(e) for e in prepared.extra)
    log.info("restore_done", backup=str(info.path), seconds=round(seconds, 3), dropped=dropped)
    _announce(life, info, policy)
    return RestoreResult(info.path, chosen.database, seconds, dropped, chosen.schema)


def refused(settings: Settings, chosen: RestorePlan, error: PredeployError, run_id: str) -> None:
    """The audit row of a restore refused once its database was read: its confirmation
    declined, or impossible (no terminal)."""
    _refused(settings, chosen.backup, error, run_id)


def _refused(settings: Settings, info: BackupInfo, error: PredeployError, run_id: str) -> Lifecycle:
    """The row of a restore refused before it began (in a session of its own)."""
    life = _life(settings, info, run_id)
    life.error = error
    life.record(detail=error.message)
    return life


def _life(settings: Settings, info: BackupInfo, run_id: str) -> Lifecycle:
    return Lifecycle.start(
        settings,
        "restore",
        run_id,
        backup_path=str(info.path),
        backup_sha256=str(info.manifest.sha256),
    )


@contextmanager
def _audited(life: Lifecycle, conn: Conn, info: BackupInfo, policy: Policy) -> Iterator[None]:
    """The restore's audit row and notification: restored, interrupted (SIGINT, SIGTERM) or
    failed."""
    try:
        with life.recorded("restoring", conn):
            yield
    except (PredeployError, KeyboardInterrupt):
        _announce(life, info, policy, replay_failed=True)
        raise
    life.record(conn=conn)


def _announce(
    life: Lifecycle, info: BackupInfo, policy: Policy, *, replay_failed: bool = False
) -> None:
    """The restore's notification. Its protection, the ONE rule: the policy the database
    remembers (``policy``), except when the replay failed or was interrupted: then the env's
    own (``protected`` left unset, the lifecycle's default). That difference is how restore
    has always notified; it is kept here on purpose, not an accident of two call sites."""
    if not replay_failed:
        life.protected = policy.protected
    error = life.error
    report = {
        "env": life.settings.env,
        "outcome": "failed" if error else "ok",
        "error": error.message if error else None,
        "backup": {"path": str(info.path)},
    }
    life.announce_logged(report, changed=error is None)
