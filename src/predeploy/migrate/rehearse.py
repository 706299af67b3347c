"""`--rehearse`: the pending transactional migrations in one transaction, rolled back."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import structlog

from predeploy.migrate.discovery import Migration
from predeploy.postgres.sessions import Conn

__all__ = ["rehearse"]

log = structlog.get_logger(__name__)


def rehearse(conn: Conn, pending: list[Migration]) -> list[dict[str, Any]]:
    """Each pending migration's time and error; the database is left as it was.

    ``conn`` holds the migrate lock, so nothing else changes the schema meanwhile.
    All run in one transaction, rolled back at the end; each inside a savepoint.
    """
    results: list[dict[str, Any]] = []
    conn.execute("BEGIN")
    try:
        for migration in pending:
            result = _rehearse_one(conn, migration)
            results.append(result)
            if result["outcome"] == "failed":
                break  # later migrations may depend on this one
    finally:
        conn.execute("ROLLBACK")
    log.info("rehearsal_done", results=len(results))
    return results


def _rehearse_one(conn: Conn, migration: Migration) -> dict[str, Any]:
    script = migration.parsed
    if not script.transactional:
        return {"name": migration.name, "outcome": "not rehearsed", "detail": script.reason}
    started = time.perf_counter()
    conn.execute("SAVEPOINT rehearsal")
    try:
        for statement in script.statements:
            conn.execute(statement.text, prepare=False)
    except psycopg.Error as exc:
        conn.execute("ROLLBACK TO SAVEPOINT rehearsal")
        return {
            "name": migration.name,
            "outcome": "failed",
            "sqlstate": exc.diag.sqlstate,
            "detail": (exc.diag.message_primary or str(exc)).strip(),
        }
    conn.execute("RELEASE SAVEPOINT rehearsal")
    return {
        "name": migration.name,
        "outcome": "ok",
        "seconds": round(time.perf_counter() - started, 4),
    }
