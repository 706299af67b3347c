"""The app hosts of ``predeploy.fleet.toml``: the servers ``deploy`` reloads over SSH.

    [deploy]
    serial = 1               # hosts per wave: a number, or "25%" of the env's hosts
    max_fail = 0             # failed hosts before the rollout stops: a count or "10%"
    connect_timeout = 10     # seconds, per host
    command_timeout = 120    # seconds, per pm2 command on a host
    # wait = 60              # seconds a reloaded host has to be healthy (PREDEPLOY_DEPLOY_WAIT)
    # strict_host_keys = false   # true: refuse hosts not in ~/.ssh/known_hosts

    [[hosts]]
    name = "web1"
    ssh = "deploy@10.0.0.11:22"       # user@host:port, or a Host alias of ~/.ssh/config
    app_dir = "/srv/app/current"
    pm2_app = "web"
    pm2_home = "/home/deploy/.pm2"     # optional: the remote user's ~/.pm2
    health_url = "http://127.0.0.1:3000/health"   # as seen from that host
    env = "prod"                       # optional: a host with env serves only that env
    # identity_file = "~/.ssh/deploy_ed25519"   # else the agent and ~/.ssh/config
    # pm2 = "/home/deploy/.nvm/versions/node/v20.11.0/bin/pm2"   # else pm2 on the
    #                                  # remote PATH, else app_dir/node_modules/.bin/pm2

No password is ever in the file: authentication is the user's own (the ssh agent,
``~/.ssh/config``, or ``identity_file``), as with ``ssh``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from predeploy.config.fleet import Budget, parse_budget
from predeploy.config.tables import FILE, TABLES, known, load, name_of, text, unique
from predeploy.errors import ConfigError

__all__ = ["AppHost", "Rollout", "Serial", "read_hosts"]

# user@host:port, user@[v6]:port, host, an ssh-config alias; no password, ever
_SSH = re.compile(
    r"(?:(?P<user>[A-Za-z0-9_.][A-Za-z0-9_.-]*)@)?"
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+))"
    r"(?::(?P<port>\d{1,5}))?"
)
_HOST_KEYS = {
    "name",
    "ssh",
    "app_dir",
    "pm2_app",
    "pm2_home",
    "health_url",
    "env",
    "identity_file",
    "pm2",
}
_DEPLOY_KEYS = {
    "serial",
    "max_fail",
    "connect_timeout",
    "command_timeout",
    "wait",
    "strict_host_keys",
}
_SECRET_KEYS = {"password", "passphrase", "connect_kwargs", "key", "private_key"}


@dataclass(frozen=True)
class AppHost:
    """One app server: how to reach it, where its app is, how to tell it is healthy."""

    name: str
    host: str
    app_dir: str
    pm2_app: str
    user: str | None = None
    port: int | None = None
    pm2_home: str | None = None
    health_url: str | None = field(default=None, repr=False)  # its query may hold a token
    env: str | None = None
    identity_file: str | None = None
    pm2: str | None = None

    @property
    def destination(self) -> str:
        """``user@host:port`` as the file gave it (no secret is ever in it)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        return f"{user}{host}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class Serial:
    """Hosts per wave: ``count``, or ``percent`` of the hosts (rounded down, at least 1)."""

    count: int = 1
    percent: float | None = None

    def size(self, total: int) -> int:
        if self.percent is None:
            return max(1, self.count)
        return max(1, int(total * self.percent / 100))

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


@dataclass(frozen=True)
class Rollout:
    """The ``[deploy]`` table and the env's hosts, in the file's order."""

    path: Path
    hosts: tuple[AppHost, ...]
    serial: Serial = field(default_factory=Serial)
    max_fail: Budget = field(default_factory=Budget)
    connect_timeout: float = 10.0
    command_timeout: float = 120.0
    wait: float | None = None  # None: PREDEPLOY_DEPLOY_WAIT
    strict_host_keys: bool = False
    # the pm2 this machine would run (PREDEPLOY_PM2_BIN, PATH, node_modules): the last
    # place a host's pm2 is looked for (hosts laid out like this one), set by the commands
    local_pm2: str | None = None

    def waves(self) -> list[tuple[AppHost, ...]]:
        """The hosts in waves of ``serial``, in the file's order."""
        size = self.serial.size(len(self.hosts))
        return [self.hosts[i : i + size] for i in range(0, len(self.hosts), size)]


def read_hosts(root: Path, env: str) -> Rollout | None:
    """The hosts that serve ``env`` (None: no fleet file, or no host serves it); a
    ConfigError (one line) when the file or an entry is wrong."""
    path = root / FILE
    data = load(path)
    if data is None:
        return None
    known(data, TABLES, FILE, "table")  # a [[host]] typo must not read as "no hosts"
    entries = data.get("hosts", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{FILE}: hosts must be [[hosts]] entries")
    if "deploy" in data and not entries:
        raise ConfigError(f"{FILE}: [deploy] without [[hosts]]: list the app hosts it deploys")
    hosts = [_host(entry, i) for i, entry in enumerate(entries)]
    unique([h.name for h in hosts], "host")
    _distinct(hosts)
    serving = tuple(h for h in hosts if h.env in (None, env))
    if not serving:
        return None
    return _rollout(path, data.get("deploy", {}), serving)


def _rollout(path: Path, table: Any, hosts: tuple[AppHost, ...]) -> Rollout:
    if not isinstance(table, dict):
        raise ConfigError(f"{FILE}: [deploy] must be a table")
    known(table, _DEPLOY_KEYS, "[deploy]")
    strict = table.get("strict_host_keys", False)
    if not isinstance(strict, bool):
        raise ConfigError(f"{FILE} [deploy] strict_host_keys must be true or false")
    wait = table.get("wait")
    return Rollout(
        path=path,
        hosts=hosts,
        serial=_serial(table.get("serial", 1)),
        max_fail=parse_budget(table.get("max_fail", 0), "[deploy] max_fail"),
        connect_timeout=_seconds(table.get("connect_timeout", 10), "connect_timeout"),
        command_timeout=_seconds(table.get("command_timeout", 120), "command_timeout"),
        wait=None if wait is None else _seconds(wait, "wait"),
        strict_host_keys=strict,
    )


def _host(entry: dict[str, Any], index: int) -> AppHost:
    label = f"{FILE} [[hosts]] #{index + 1}"
    secret = sorted(set(entry) & _SECRET_KEYS)
    if secret:
        raise ConfigError(
            f"{label}: {secret[0]!r} would put a secret in the repository: authenticate with "
            f"the ssh agent, ~/.ssh/config or identity_file (a key file's path)"
        )
    known(entry, _HOST_KEYS, label)
    name = name_of(entry, label)
    label = f"{FILE} host {name}"
    texts = {k: _stripped(entry.get(k), f"{label}: {k}") for k in _HOST_KEYS - {"name"}}
    for required in ("ssh", "app_dir", "pm2_app"):
        if texts[required] is None:
            raise ConfigError(f"{label}: {required} is required")
    user, host, port = _destination(str(texts["ssh"]), label)
    if not str(texts["app_dir"]).startswith(("/", "~")):
        raise ConfigError(f"{label}: app_dir must be an absolute path on the host")
    _check_url(texts["health_url"], label)
    return AppHost(
        name=name,
        host=host,
        user=user,
        port=port,
        app_dir=str(texts["app_dir"]),
        pm2_app=str(texts["pm2_app"]),
        pm2_home=texts["pm2_home"],
        health_url=texts["health_url"],
        env=texts["env"],
        identity_file=texts["identity_file"],
        pm2=texts["pm2"],
    )


def _destination(text: str, label: str) -> tuple[str | None, str, int | None]:
    if ":" in text.split("@", 1)[0] and "@" in text:
        raise ConfigError(
            f"{label}: ssh must not hold a password (user:password@host): authenticate "
            f"with the ssh agent, ~/.ssh/config or identity_file"
        )
    found = _SSH.fullmatch(text.strip())
    port = int(found["port"]) if found and found["port"] else None
    if found is None or (port is not None and not 0 < port < 65536):
        raise ConfigError(
            f"{label}: ssh must be user@host:port (user and port optional), got {text!r}"
        )
    return found["user"], found["v6"] or found["host"], port


def _check_url(url: str | None, label: str) -> None:
    if url is None:
        return
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(
            f"{label}: health_url must be an http(s) URL such as http://127.0.0.1:3000/health"
        )


def _serial(value: Any) -> Serial:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return Serial(count=value)
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?%", value.strip()):
        percent = float(value.strip()[:-1])
        if 0 < percent <= 100:
            return Serial(percent=percent)
    raise ConfigError(
        f"{FILE} [deploy] serial must be a number of hosts per wave (at least 1) or a "
        f'percentage such as "25%", got {value!r}'
    )


def _seconds(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
        raise ConfigError(f"{FILE} [deploy] {key} must be a number of seconds, got {value!r}")
    return float(value)


def _stripped(value: Any, label: str) -> str | None:
    found = text(value, label)
    return found.strip() if found is not None else None


def _distinct(hosts: list[AppHost]) -> None:
    """Two entries for one app (same destination, folder, PM2_HOME, app) would reload it
    twice in one rollout: refused."""
    seen: dict[tuple[str | int | None, ...], str] = {}
    for host in hosts:
        key = (host.user, host.host, host.port, host.app_dir, host.pm2_home, host.pm2_app, host.env)
        if key in seen:
            raise ConfigError(
                f"{FILE}: hosts {seen[key]} and {host.name} are the same app ({host.pm2_app} "
                f"in {host.app_dir} on {host.destination}): keep one"
            )
        seen[key] = host.name
