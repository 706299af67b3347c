"""`--rehearse`: the pending transactional migrations in one transaction, rolled back."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import structlog

from predeploy.config import Settings
from predeploy.dburl import DatabaseUrl
from predeploy.lock import migrate_session
from predeploy.migrations import Migration
from predeploy.sqlscript import analyse

__all__ = ["rehearse"]

log = structlog.get_logger(__name__)


def rehearse(
    settings: Settings, url: DatabaseUrl, variable: str, pending: list[Migration]
) -> list[dict[str, Any]]:
    """Each pending migration's time and error; the database is left as it was."""
    results: list[dict[str, Any]] = []
    with migrate_session(settings, url, variable, "rehearse") as conn:
        conn.execute("BEGIN")
        try:
            for migration in pending:
                script = analyse(migration.script.decode("utf-8-sig"))
                if not script.transactional:
                    results.append(
                        {
                            "name": migration.name,
                            "outcome": "not rehearsed",
                            "detail": script.reason,
                        }
                    )
                    continue
                started = time.perf_counter()
                try:
                    conn.execute("SAVEPOINT rehearsal")
                    for statement in script.statements:
                        conn.execute(statement.text, prepare=False)
                    conn.execute("RELEASE SAVEPOINT rehearsal")
                    results.append(
                        {
                            "name": migration.name,
                            "outcome": "ok",
                            "seconds": round(time.perf_counter() - started, 4),
                        }
                    )
                except psycopg.Error as exc:
                    conn.execute("ROLLBACK TO SAVEPOINT rehearsal")
                    results.append(
                        {
                            "name": migration.name,
                            "outcome": "failed",
                            "sqlstate": exc.diag.sqlstate,
                            "detail": (exc.diag.message_primary or str(exc)).strip(),
                        }
                    )
                    break  # later migrations may depend on this one
        finally:
            conn.execute("ROLLBACK")
    log.info("rehearsal_done", results=len(results))
    return results
