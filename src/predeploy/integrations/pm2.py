"""pm2: finding the program, reading its process list, reloading an app.

The program is PREDEPLOY_PM2_BIN, else `pm2` on PATH, else the project's
`node_modules/.bin/pm2`. It runs through ``predeploy.programs.run`` like pg_dump
(an argv list, an allowlisted environment), with PM2_DISCRETE_MODE=true so that a fresh
PM2_HOME prints no banner before `jlist`'s JSON. `jlist` carries every process's
full environment, secrets included: only the fields below are ever kept.

Every pm2 command starts a pm2 daemon for its PM2_HOME when none runs, and under cron's
`env -i` (no HOME) pm2 falls back to /etc/.pm2: a check would start an empty pm2 and
report the app missing. So the PM2_HOME is the one the app's pm2 uses (PM2_HOME, else
$HOME/.pm2, else the user's home from the password database), it is passed to pm2
explicitly, and no pm2 command runs unless that home's daemon is alive (its pm2.pid
names a live process and its rpc.sock exists).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from predeploy._util.operator import operator
from predeploy.config.parts import Pm2Settings
from predeploy.errors import ConfigError, HealthCheckFailed
from predeploy.programs import run as programs

__all__ = [
    "Pm2",
    "Process",
    "daemon_pid",
    "find_program",
    "home_prefix",
    "parse_jlist",
    "pasted",
    "pm2_home",
]

log = structlog.get_logger(__name__)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Process:
    """One pm2 process of an app: what a deploy needs to know about it."""

    name: str
    pm_id: int
    pid: int
    status: str  # online, stopping, stopped, launching, errored, one-launch-status
    restarts: int
    cluster: bool
    uptime_since_ms: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def find_program(settings: Pm2Settings) -> Path:
    """The pm2 program: PREDEPLOY_PM2_BIN, else `pm2` on PATH, else node_modules/.bin/pm2."""
    if settings.program is not None:
        if not (settings.program.is_file() and os.access(settings.program, os.X_OK)):
            raise ConfigError(f"PREDEPLOY_PM2_BIN={settings.program} is not an executable file")
        return settings.program
    on_path = shutil.which("pm2")
    if on_path:
        return Path(on_path)
    local = settings.root / "node_modules" / ".bin" / "pm2"
    if local.is_file() and os.access(local, os.X_OK):
        return local
    raise ConfigError(
        f"pm2 not found (PREDEPLOY_PM2_BIN unset, no pm2 on PATH, no {local}): install it "
        f"(npm install pm2) or set PREDEPLOY_PM2_BIN to its path"
    )


def pm2_home() -> Path:
    """The PM2_HOME the user's pm2 uses: PM2_HOME, else ~/.pm2 (HOME, else the password
    database's home: cron's `env -i` sets no HOME)."""
    named = os.environ.get("PM2_HOME")
    if named:
        return Path(named)
    home = os.environ.get("HOME")
    if not home:
        try:
            home = pwd.getpwuid(os.getuid()).pw_dir
        except KeyError:
            home = "/"
    return Path(home) / ".pm2"


def daemon_pid(home: Path) -> int | None:
    """The pid of the pm2 daemon of ``home`` when one is alive (never starts one)."""
    try:
        pid = int((home / "pm2.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    if not (home / "rpc.sock").exists():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # another user's live process: the daemon is there
    return pid


def pasted(settings: Pm2Settings, *args: str) -> str:
    """A pm2 command line for a runbook, that runs when pasted from any folder and any PATH:
    the pm2 predeploy runs (by absolute path), with the PM2_HOME it runs it with, if set
    (another pm2 or PM2_HOME is another daemon: one that knows no such app)."""
    try:
        program = str(find_program(settings).absolute())
    except ConfigError:
        program = "pm2"  # none found here: the operator's own, then
    return home_prefix() + " ".join(shlex.quote(word) for word in (program, *args))


def home_prefix() -> str:
    """``PM2_HOME=... `` (shell-quoted, a space after) when this run has PM2_HOME set, else
    "": what a pasted or scheduled line that asks pm2 needs to ask the same daemon."""
    home = os.environ.get("PM2_HOME")
    return f"PM2_HOME={shlex.quote(home)} " if home else ""


class Pm2:
    """The pm2 program for one app."""

    def __init__(self, program: Path, app: str, timeout: float = 60.0) -> None:
        self.program, self.app, self.timeout = program, app, timeout

    @classmethod
    def for_settings(cls, settings: Pm2Settings) -> Pm2:
        if not settings.app:
            raise ConfigError(
                "PREDEPLOY_PM2_APP is not set: name the pm2 app in .env.<env> "
                "(PREDEPLOY_PM2_APP=web)"
            )
        return cls(find_program(settings), settings.app, timeout=max(settings.wait, 30))

    def processes(self) -> list[Process]:
        """The app's processes, as `pm2 jlist` reports them now."""
        return parse_jlist(self._run("jlist"), self.app, str(self.program))

    def home(self) -> str:
        """Whose pm2 this is: a wrong PM2_HOME or user shows an empty pm2."""
        return f"PM2_HOME {pm2_home()}, user {operator()}"

    def running(self) -> bool:
        """Whether the daemon of this user's PM2_HOME is alive."""
        return daemon_pid(pm2_home()) is not None

    def message_no_daemon(self) -> str:
        return (
            f"no pm2 daemon runs for {self.home()} (no live pm2.pid there), so {self.app} "
            f"cannot be online under it; pm2 was not run, as it would start an empty one: "
            f"run this as the app's user, set PM2_HOME to the app's pm2 folder, or start "
            f"the app (pm2 start ecosystem.config.js)"
        )

    def reload(self, *, restart: bool = False) -> None:
        """`pm2 reload APP` (zero-downtime in cluster mode), or `pm2 restart APP`."""
        self._run("restart" if restart else "reload", self.app)

    def _run(self, *args: str) -> str:
        home = pm2_home()
        if daemon_pid(home) is None:
            raise ConfigError(self.message_no_daemon())
        env = programs.child_env(
            {"PM2_DISCRETE_MODE": "true", "FORCE_COLOR": "0", "PM2_HOME": str(home)},
            keep=("PM2_*", "NODE_*", "NVM_*"),
        )
        started = time.perf_counter()
        out = programs.Collect()
        try:
            running = programs.start(self.program, args, env=env, stdout=out)
        except programs.ProgramFailed as exc:
            raise ConfigError(f"cannot run {self.program}: {exc.reason}") from None
        code = running.wait(self.timeout)
        if running.timed_out:
            raise HealthCheckFailed(f"pm2 {args[0]} did not finish within {self.timeout:g}s")
        seconds = time.perf_counter() - started
        if code != 0:
            reason = (
                _last_line("\n".join(running.stderr.lines))
                or _last_line(out.text())
                or f"exit {code}"
            )
            raise HealthCheckFailed(f"pm2 {' '.join(args)} failed: {reason}")
        if args[0] != "jlist":
            log.info("pm2", command=" ".join(args), seconds=round(seconds, 3))
        return out.text()


def parse_jlist(output: str, app: str, program: str = "pm2") -> list[Process]:
    """The processes of ``app`` in `pm2 jlist`'s output (only the fields of ``Process``:
    the rest, every process's environment, is never kept)."""
    start = output.find("[")  # a banner, should one slip through, comes before the JSON
    try:
        listed = json.loads(output[start:]) if start >= 0 else None
    except ValueError:
        listed = None
    if not isinstance(listed, list):
        raise HealthCheckFailed(f"{program} jlist did not print a JSON process list")
    return [_process(item) for item in listed if isinstance(item, dict) and item.get("name") == app]


def _process(item: dict[str, Any]) -> Process:
    env = item.get("pm2_env") or {}
    return Process(
        name=str(item.get("name")),
        pm_id=int(item.get("pm_id") or 0),
        pid=int(item.get("pid") or 0),
        status=str(env.get("status") or "unknown"),
        restarts=int(env.get("restart_time") or 0),
        cluster=env.get("exec_mode") == "cluster_mode",
        uptime_since_ms=int(env.get("pm_uptime") or 0),
    )


def _last_line(text: str) -> str:
    lines = [_ANSI.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else ""
