"""A primary and a hot standby made by pg_basebackup -R."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from support.cluster import ThrowawayCluster, free_port

__all__ = ["primary_and_standby"]


def _as_server(cluster: ThrowawayCluster, program: str, *args: str, timeout: float = 90) -> None:
    """Run one of ``cluster``'s programs as the user that runs its server (root cannot)."""
    subprocess.run(
        [str(cluster.bin_dir / program), *args],
        user=cluster._user,  # the same user must own the standby's files
        env={**os.environ, "PGPASSWORD": cluster.password},
        capture_output=True,
        check=True,
        timeout=timeout,
    )


@contextmanager
def primary_and_standby() -> Iterator[tuple[str, str]]:
    """(primary URL, standby URL) of a database `app`, both stopped afterwards."""
    primary = ThrowawayCluster().start()
    base = Path(tempfile.mkdtemp(prefix="predeploy-pg-", dir="/tmp"))
    data, port = base / "data", free_port()
    try:
        with psycopg.connect(primary.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
        if primary._user is not None:
            base.chmod(0o755)
            shutil.chown(base, primary._user, primary._user)
        _as_server(
            primary, "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port),
            "-U", "postgres", "-D", str(data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        options = " ".join(  # a standby needs max_connections at least the primary's
            [f"-p {port} -c listen_addresses=127.0.0.1 -k {base} -c hot_standby=on"]
            + [f"-c {key}={value}" for key, value in primary.settings.items()]
        )
        _as_server(
            primary, "pg_ctl", "-D", str(data), "-w", "-t", "60",
            "-l", str(base / "server.log"), "-o", options, "start",
        )  # fmt: skip
        yield primary.url("app"), f"postgresql://postgres:{primary.password}@127.0.0.1:{port}/app"
    finally:
        if (data / "postmaster.pid").exists():
            _as_server(primary, "pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)
        primary.stop()
