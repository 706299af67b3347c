"""A database remembers the protected env that changed it, and its policy follows.

A protected env's run that migrates, rolls back or restores a database leaves a marker
there, on the session that makes the change: the comment of predeploy's audit table (in
the history's schema, so each Prisma ``?schema=`` has its own), naming the env, when, by
whom and from which host. A restore keeps the audit table, so the marker too. Every later
run reads it on its first session (one query; a second, on the audit rows, when the
audit table has no marker; no audit table: no marker) and gets the
policy ``predeploy.config.policy.for_target`` decides from it and from where the database
is. Databases changed by a protected env before predeploy marked them are known by their
audit rows. On a copy that really is scratch, one line forgets all of it:
``COMMENT ON TABLE predeploy_runs IS 'predeploy scratch'``.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime

import psycopg
import structlog
from psycopg import sql

from predeploy._util.log import SENTENCE
from predeploy._util.operator import operator
from predeploy.config.policy import PROTECTED_ENVS, Place, Policy, for_target
from predeploy.db import audit
from predeploy.db.connect import Conn
from predeploy.db.failures import message_of
from predeploy.db.table import Table
from predeploy.db.target import Target

__all__ = ["PREFIX", "SCRATCH", "decide", "mark", "parse", "place_of", "policy_of", "read"]

log = structlog.get_logger(__name__)

PREFIX = "predeploy protected: "
SCRATCH = "predeploy scratch"  # written by an operator: this copy remembers nothing
_UNKNOWN = "an unknown protected env"


def parse(comment: str | None) -> str | None:
    """The env a marker names; None when ``comment`` is no marker of ours."""
    if not comment or not comment.startswith(PREFIX):
        return None
    try:
        env = json.loads(comment[len(PREFIX) :]).get("env")
    except (ValueError, AttributeError):
        env = None
    return str(env) if env else _UNKNOWN


# the marker on ``table`` first, else one on another table of its schema (an env whose
# PREDEPLOY_AUDIT_TABLE names another audit table marks that one); and whether ``table`` is
_READ = """
SELECT (SELECT d.description FROM pg_description d
        JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
          AND d.objsubid = 0
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
          AND d.description LIKE %(prefix)s
        ORDER BY c.relname = %(name)s DESC, c.relname LIMIT 1),
       EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = %(schema)s AND c.relname = %(name)s AND c.relkind IN ('r', 'p'))
"""
# (the catalogue, not to_regclass: that raises "permission denied for schema" without USAGE,
# before the privileges gate could name the GRANT)
# what a protected run that changed (or found up to date) the database left in the audit
# table before predeploy marked databases
_CHANGED = ("applied", "nothing pending", "rolled back", "restored", "deployed")
_EARLIER = "SELECT env FROM {} WHERE env = ANY(%s) AND outcome = ANY(%s) ORDER BY id DESC LIMIT 1"


def read(conn: Conn, table: Table) -> tuple[str | None, bool]:
    """The env the database remembers, and whether its marker says so (False: only the audit
    rows of a protected run by a predeploy that did not mark databases yet)."""
    like = "predeploy %"
    row = conn.execute(
        _READ,
        {"schema": table.schema, "name": table.name, "prefix": like},
    ).fetchone()
    comment, has_audit = row if row is not None else (None, False)
    if comment is not None and comment.strip() == SCRATCH:
        return None, True
    env = parse(comment)
    if env is not None or not has_audit:
        return env, env is not None
    return _earlier(conn, table), False


def _earlier(conn: Conn, table: Table) -> str | None:
    """A protected env named in the audit rows of a run that changed the database."""
    query = sql.SQL(_EARLIER).format(table.ident)
    try:
        with conn.transaction():  # a savepoint: a refused read leaves the session usable
            row = conn.execute(query, (sorted(PROTECTED_ENVS), list(_CHANGED))).fetchone()
    except (
        psycopg.errors.InsufficientPrivilege,
        psycopg.errors.LockNotAvailable,
        psycopg.errors.QueryCanceled,
        psycopg.errors.UndefinedColumn,
    ) as exc:
        log.warning("audit_not_read", table=str(table), detail=message_of(exc))
        return None
    return str(row[0]) if row else None


def mark(conn: Conn, table: Table, *, env: str, command: str, run_id: str) -> None:
    """Make the database remember ``env``; a failure is logged, never raised over the run."""
    note = {
        "env": env,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "operator": operator(),
        "host": socket.gethostname(),
        "command": command,
        "run_id": run_id,
    }
    try:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.execute("ROLLBACK")
        audit.ensure_table(conn, table)
        comment = sql.Literal(PREFIX + json.dumps(note))
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table.ident, comment))
    except psycopg.Error as exc:
        detail = message_of(exc)
        log.warning("protection_not_marked", table=str(table), detail=detail)
        return
    log.info("protection_marked", env=env, table=str(table))


def place_of(target: Target, conn: Conn) -> Place:
    """Where ``conn`` (a session on ``target``'s direct URL) is, and what it remembers."""
    env, marked = read(conn, target.audit)
    return Place(conn.info.dbname, target.server, target.local, env, marked=marked)


def policy_of(target: Target, conn: Conn, *, say: bool = True) -> Policy:
    """The policy of this run on ``conn``'s database; says once when the database decided
    (unless ``say`` is False: it was said already)."""
    return decide(target, place_of(target, conn), say=say)


def decide(target: Target, place: Place, *, say: bool = True) -> Policy:
    """The policy of ``target``'s env on ``place`` (``for_target``), said when it differs."""
    policy = for_target(
        target.env_policy,
        place,
        scratch=target.scratch,
        allow_no_backup=target.allow_no_backup,
    )
    if policy.caution and say:
        log.warning("policy_from_target", detail=policy.caution, **{SENTENCE: True})
    log.info("policy", detail=policy.describe(), protected=policy.protected)
    return policy
