"""What a killed run left behind, swept by the next one.

A SIGKILL gives a run no chance to clean up: a hidden ``.<name>.<pid>.partial`` dump, a
restore's ``predeploy-<pid>-*.list`` (pg_restore's table of contents) in the temporary
folder, or (from versions before the in-memory passfile) a ``predeploy-*`` temporary
folder holding a plain-text ``pgpass``. Only names of ours are touched, and only when no
running predeploy could still own them: the pid in the name is gone, or (names without a
pid) the file is older than every predeploy process running now.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import structlog

__all__ = [
    "partial_name",
    "pid_alive",
    "sweep_partials",
    "sweep_temp_files",
    "sweep_temp_folders",
    "temp_prefix",
]

log = structlog.get_logger(__name__)
_PARTIAL = re.compile(r"^\.(?P<name>.+?)(?:\.(?P<pid>\d+))?\.partial$")
_TEMP_FILE = re.compile(r"^predeploy-(?P<pid>\d+)-[^/]*\.list$")
_BOOT_CLOCK_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def partial_name(final: str) -> str:
    """The hidden name a file of ours has until it is complete: ``.<final>.<pid>.partial``."""
    return f".{final}.{os.getpid()}.partial"


def sweep_partials(folder: Path) -> list[Path]:
    """Remove the stale partial files of ``folder``; returns them."""
    if not folder.is_dir():
        return []
    oldest = _oldest_running_start()
    swept = []
    for path in folder.iterdir():
        match = _PARTIAL.match(path.name)
        if match is None:
            continue
        pid = match.group("pid")
        if pid is not None:
            stale = int(pid) != os.getpid() and not pid_alive(int(pid))
        else:
            stale = _mtime(path) < oldest
        if stale:
            _remove(path)
            swept.append(path)
    for path in swept:
        log.info("stale_partial_removed", path=str(path))
    return swept


def temp_prefix() -> str:
    """The prefix of this process's files in the temporary folder (``sweep_temp_files``)."""
    return f"predeploy-{os.getpid()}-"


def sweep_temp_files() -> list[Path]:
    """Remove the ``predeploy-<pid>-*.list`` files of the temporary folder whose process is
    gone (a restore killed with SIGKILL left its pg_restore list there)."""
    swept = []
    for path in Path(tempfile.gettempdir()).glob("predeploy-*.list"):
        match = _TEMP_FILE.match(path.name)
        if match is None or path.is_dir() or path.is_symlink():
            continue
        pid = int(match.group("pid"))
        if pid != os.getpid() and not pid_alive(pid):
            _remove(path)
            swept.append(path)
    for path in swept:
        log.info("stale_temp_file_removed", path=str(path))
    return swept


def sweep_temp_folders() -> list[Path]:
    """Remove old ``predeploy-*`` temporary folders that hold a passfile (older versions
    wrote the password there; a killed run left it)."""
    base = Path(tempfile.gettempdir())
    oldest = _oldest_running_start()
    swept = []
    for folder in base.glob("predeploy-*"):
        try:
            names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        except OSError:
            continue
        if names == {"pgpass"} and _mtime(folder) < oldest:
            _remove(folder)
            swept.append(folder)
    for folder in swept:
        log.warning("stale_passfile_removed", path=str(folder))
    return swept


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` running (someone else's counts as running)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge
    return True


def _oldest_running_start() -> float:
    """When the oldest predeploy process still running started (epoch seconds); now if none
    but this one."""
    oldest = time.time()
    me = os.getpid()
    boot = _boot_time()
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"predeploy" not in cmdline and b"invoke" not in cmdline:
                continue
            ticks = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[19])
        except (OSError, ValueError, IndexError):
            continue
        oldest = min(oldest, boot + ticks / _BOOT_CLOCK_HZ)
    return oldest


def _boot_time() -> float:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
