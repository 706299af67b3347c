"""Real app hosts for the issue-25 tests: each host is its own `sshd` (Debian's openssh-server)
on 127.0.0.1 and a free port, with its own app folder, PM2_HOME and HTTP port, the app `web`
run by a real pm2 (cluster mode, 2 instances, unless told otherwise).

One throwaway client key (ed25519) is shared by every host; each host has its own throwaway
host key. The ssh user is the current user (root in CI: PermitRootLogin prohibit-password).
Readiness is observed (the port answers with an SSH-2.0 banner; /health answers 200), never
slept for. Every sshd (and whatever session it still runs) is killed and every PM2_HOME's
daemon is `pm2 kill`ed at exit.

Outside CI, without /usr/sbin/sshd, ssh-keygen or node/npm, the test skips saying what is
missing; in CI (where .ci/run installs them) it fails instead.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.cluster import free_port

__all__ = [
    "BROKEN_RELEASE",
    "GOOD_RELEASE",
    "SILENT_RELEASE",
    "SSHD",
    "AppHost",
    "HostSite",
    "RequestLoop",
    "app_hosts",
    "request_loop",
    "ssh_argv",
]

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself: it must be started by its absolute path
# The app: /health (any query) answers 200, any other path 503, the body is the pid. It
# shuts down as a zero-downtime cluster-mode app must: on pm2 reload's SIGINT it stops
# accepting and exits a second later. Measured here (one host, 20 reloads, Node 20, pm2 7):
# exiting at once, or as soon as server.close() is done, 2-3 requests hung until their 5 s
# timeout (pm2's master had handed them to the exiting worker); with the second's grace,
# none in 150,000 requests. So a failed request during a rollout is the deploy's doing.
GOOD_RELEASE = """\
const http = require('http');
const server = http.createServer((req, res) => {
  res.writeHead(req.url.split('?')[0] === '/health' ? 200 : 503, {'content-type': 'text/plain'});
  res.end(String(process.pid));
}).listen(process.env.PORT);
process.on('SIGINT', () => {
  server.close();
  setTimeout(() => process.exit(0), 1000);
});
"""
# a new release that starts and listens but whose /health answers 503
BROKEN_RELEASE = GOOD_RELEASE.replace("req.url.split('?')[0] === '/health' ? 200 : 503", "503")
# a new release that accepts every request and never answers
SILENT_RELEASE = """\
const http = require('http');
const server = http.createServer((req, res) => {}).listen(process.env.PORT);
process.on('SIGINT', () => {
  server.close();
  setTimeout(() => process.exit(0), 1000);
});
"""

_ECOSYSTEM = """\
module.exports = {{
  apps: [
    {{
      name: 'web',
      script: 'server.js',
      exec_mode: '{mode}',
      instances: {instances},
      env: {{ PORT: {port}, APP_SECRET: '{secret}' }},
    }},
  ],
}};
"""

_SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers {user}
LogLevel VERBOSE
"""

_READY = 20.0  # seconds an sshd or an app gets to answer
_PM2_TIMEOUT = 60


def _missing() -> str | None:
    needs = {SSHD: "openssh-server", "ssh-keygen": "openssh-client", "ssh": "openssh-client"}
    for program, package in needs.items():
        if not (os.access(program, os.X_OK) if program.startswith("/") else shutil.which(program)):
            return f"{program} not installed: the app-host tests need it (apt install {package})"
    if not (shutil.which("node") and shutil.which("npm")):
        return "node/npm not installed: the app-host tests run pm2 (apt-get install nodejs npm)"
    return None


def require_hosts() -> None:
    """Skip (outside CI) or fail (in CI) when sshd, ssh-keygen, ssh or node/npm are missing."""
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (.ci/run installs it)")
    pytest.skip(reason)


def ssh_argv(host: AppHost, command: str) -> list[str]:
    """The real `ssh` client running ``command`` on ``host`` with the throwaway key."""
    user, address = host.ssh.rsplit("@", 1)
    address, port = address.rsplit(":", 1)
    return [
        "ssh",
        "-i",
        str(host.identity_file),
        "-p",
        port,
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=5",
        f"{user}@{address}",
        command,
    ]


@dataclass
class AppHost:
    """One "app server": an sshd, an app folder with the app `web`, its pm2 and HTTP port."""

    name: str
    ssh: str  # USER@127.0.0.1:PORT
    app_dir: Path
    pm2_app: str
    pm2_home: Path
    health_url: str
    identity_file: Path
    ssh_port: int
    app_port: int
    folder: Path  # the host's own files: sshd config, host key, pid file, sshd log
    # in the app's environment (pm2 jlist shows it): must never leave the host
    app_secret: str = field(default_factory=lambda: f"app-secret-{secrets.token_hex(8)}")
    sshd: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pm2_bin(self) -> Path:
        return self.app_dir / "node_modules" / ".bin" / "pm2"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    def pm2(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """pm2 ARGS for this host's PM2_HOME, run locally (not over SSH)."""
        env = {**os.environ, "PM2_HOME": str(self.pm2_home), "PM2_DISCRETE_MODE": "true", **extra}
        return subprocess.run(
            [str(self.pm2_bin), *args],
            cwd=self.app_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=_PM2_TIMEOUT,
            check=False,
        )

    def processes(self) -> list[dict[str, object]]:
        """pm2 jlist's processes of the app: pid, status, restarts (never their environment)."""
        done = self.pm2("jlist")
        assert done.returncode == 0, done.stderr
        return [
            {
                "pid": p["pid"],
                "status": p["pm2_env"]["status"],
                "restarts": p["pm2_env"]["restart_time"],
                "uptime": p["pm2_env"]["pm_uptime"],  # when it started: ms since the epoch
            }
            for p in json.loads(done.stdout)
            if p["name"] == self.pm2_app
        ]

    def started(self) -> list[float]:
        """When each running instance of the app started (seconds since the epoch)."""
        return sorted(int(str(p["uptime"])) / 1000 for p in self.processes() if p["pid"])

    def pids(self) -> set[int]:
        """The pids pm2 runs the app with now (0 for a stopped instance is left out)."""
        return {int(str(p["pid"])) for p in self.processes() if p["pid"]}

    def release(self, server_js: str) -> None:
        """A new release on disk (what a deploy's `pm2 reload` picks up); nothing restarts."""
        target = self.app_dir / "server.js"
        partial = target.with_suffix(".js.partial")
        partial.write_text(server_js)
        partial.replace(target)

    def health(self) -> int | None:
        """The HTTP status of the health URL now (None: no answer)."""
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as answer:  # noqa: S310
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return None

    def stop_sshd(self) -> None:
        """The host becomes unreachable: its sshd (and every session it runs) is killed and
        its port refuses connections."""
        if self.sshd is not None:
            _kill_tree(self.sshd)
            self.sshd = None
        assert not _answers(self.ssh_port), f"{self.name}: port {self.ssh_port} still answers"

    def restart_sshd(self, *options: str) -> None:
        """The host's sshd again, on the same port with the same keys, its config plus
        ``options`` (sshd_config lines, e.g. "AllowTcpForwarding no")."""
        self.stop_sshd()
        config = self.folder / "sshd_config"
        config.write_text(config.read_text() + "".join(f"{line}\n" for line in options))
        _start_sshd(self)

    def stop_app(self) -> None:
        """`pm2 stop` the app: pm2 says stopped, the health URL refuses."""
        done = self.pm2("stop", self.pm2_app)
        assert done.returncode == 0, done.stderr
        _poll(lambda: self.health() is None, f"{self.name}'s app to stop answering")

    def sshd_log(self) -> str:
        log = self.folder / "sshd.log"
        return log.read_text(errors="replace") if log.exists() else ""


@dataclass
class HostSite:
    hosts: list[AppHost]
    identity_file: Path
    known_hosts: Path  # the hosts' keys as `ssh` and paramiko read them

    def toml(self, serial: int | str = 1, max_fail: int = 0, **deploy_extra: object) -> str:
        """The `[deploy]` table and one `[[hosts]]` entry per host, for predeploy.fleet.toml."""
        deploy = {"serial": serial, "max_fail": max_fail, **deploy_extra}
        lines = ["[deploy]", *(f"{k} = {_toml(v)}" for k, v in deploy.items())]
        for host in self.hosts:
            entry = {
                "name": host.name,
                "ssh": host.ssh,
                "app_dir": str(host.app_dir),
                "pm2_app": host.pm2_app,
                "pm2_home": str(host.pm2_home),
                "health_url": host.health_url,
                "identity_file": str(host.identity_file),
            }
            lines += ["", "[[hosts]]", *(f"{k} = {_toml(v)}" for k, v in entry.items())]
        return "\n".join(lines) + "\n"

    def by_name(self, name: str) -> AppHost:
        return next(h for h in self.hosts if h.name == name)

    def all_pids(self) -> dict[str, set[int]]:
        return {host.name: host.pids() for host in self.hosts}


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))  # a TOML basic string for the paths and URLs used here


@contextmanager
def app_hosts(
    folder: Path, count: int = 3, *, cluster: bool = True, pm2_bin: Path
) -> Iterator[HostSite]:
    """``count`` app hosts web1..webN under ``folder``, their app `web` started by pm2 (from
    ``pm2_bin``: the session's `npm install pm2`, conftest's ``pm2_bin`` fixture) and healthy.
    ``cluster=False`` runs the app in fork mode (1 instance)."""
    require_hosts()
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # privilege separation
    folder.mkdir(parents=True, exist_ok=True)
    identity = _keygen(folder / "client_ed25519")
    authorized = folder / "authorized_keys"
    authorized.write_text(identity.with_suffix(".pub").read_text())
    hosts: list[AppHost] = []
    with contextlib.ExitStack() as stack:
        for n in range(1, count + 1):
            host = _new_host(folder / f"web{n}", f"web{n}", identity, authorized, pm2_bin)
            stack.callback(_tear_down, host)
            hosts.append(host)
            _start_sshd(host)
            _start_app(host, cluster=cluster)
        known = folder / "known_hosts"
        known.write_text("".join(_known_line(h) for h in hosts))
        yield HostSite(hosts, identity, known)


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    return path


def _new_host(folder: Path, name: str, identity: Path, authorized: Path, pm2_bin: Path) -> AppHost:
    folder.mkdir(parents=True)
    app_dir = folder / "app"
    app_dir.mkdir()
    (app_dir / "node_modules").symlink_to(pm2_bin.parents[1])  # the app's own pm2
    home = folder / "pm2home"
    home.mkdir()
    ssh_port, app_port = free_port(), free_port()
    host = AppHost(
        name=name,
        ssh=f"{getpass.getuser()}@127.0.0.1:{ssh_port}",
        app_dir=app_dir,
        pm2_app="web",
        pm2_home=home,
        health_url=f"http://127.0.0.1:{app_port}/health",
        identity_file=identity,
        ssh_port=ssh_port,
        app_port=app_port,
        folder=folder,
    )
    host_key = _keygen(folder / "host_ed25519")
    (folder / "sshd_config").write_text(
        _SSHD_CONFIG.format(
            port=ssh_port,
            host_key=host_key,
            pid_file=folder / "sshd.pid",
            authorized_keys=authorized,
            user=getpass.getuser(),
        )
    )
    return host


def _start_sshd(host: AppHost) -> None:
    config = host.folder / "sshd_config"
    check = subprocess.run(
        [SSHD, "-t", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    assert check.returncode == 0, f"{host.name}: sshd -t refuses its config: {check.stderr}"
    with (host.folder / "sshd.log").open("ab") as log:
        host.sshd = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sshd = host.sshd

    def ready() -> bool:
        assert sshd.poll() is None, f"{host.name}: sshd exited: {host.sshd_log()}"
        return _answers(host.ssh_port)

    _poll(ready, f"{host.name}'s sshd to answer with an SSH-2.0 banner")


def _answers(port: int) -> bool:
    """Whether 127.0.0.1:PORT answers with an SSH banner now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.settimeout(2)
            return sock.recv(64).startswith(b"SSH-2.0")
    except OSError:
        return False


def _start_app(host: AppHost, *, cluster: bool) -> None:
    (host.app_dir / "server.js").write_text(GOOD_RELEASE)
    mode, instances = ("cluster", 2) if cluster else ("fork", 1)
    ecosystem = host.app_dir / "ecosystem.config.js"
    ecosystem.write_text(
        _ECOSYSTEM.format(
            mode=mode, instances=instances, port=host.app_port, secret=host.app_secret
        )
    )
    done = host.pm2("start", str(ecosystem))  # starts the pm2 daemon
    assert done.returncode == 0, f"{host.name}: pm2 start: {done.stderr}"
    _poll(lambda: host.health() == 200, f"{host.name}'s app to answer 200 on /health")
    _poll(lambda: len(host.pids()) == instances, f"{host.name}'s {instances} instance(s)")


def _known_line(host: AppHost) -> str:
    key = (host.folder / "host_ed25519.pub").read_text().split()
    return f"[127.0.0.1]:{host.ssh_port} {key[0]} {key[1]}\n"


def _tear_down(host: AppHost) -> None:
    if host.sshd is not None:
        _kill_tree(host.sshd)
        host.sshd = None
    if host.pm2_bin.exists():
        env = {**os.environ, "PM2_HOME": str(host.pm2_home)}
        subprocess.run(
            [str(host.pm2_bin), "kill"],
            env=env,
            capture_output=True,
            timeout=_PM2_TIMEOUT,
            check=False,
        )


def _children() -> dict[int, list[int]]:
    """{ppid: [pid, ...]} of every process now, read from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``process`` and every descendant (sshd's per-connection sessions call setsid:
    a process group would miss them)."""
    tree = _children()
    doomed, todo = [], [process.pid]
    while todo:
        pid = todo.pop()
        doomed.append(pid)
        todo.extend(tree.get(pid, []))
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)


def _poll(condition: Callable[[], object], what: str, timeout: float = _READY) -> None:
    """Poll ``condition()`` until it is true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@dataclass
class RequestLoop:
    """What a request loop saw: how many requests it made, and each failed one."""

    requests: int = 0
    failures: list[str] = field(default_factory=list)


@contextmanager
def request_loop(urls: list[str]) -> Iterator[RequestLoop]:
    """A thread GETs each of ``urls`` in turn, again and again, until the block ends, and
    records every failed request: no answer (refused, reset, timed out), or, for a URL
    ending in /health, a non-2xx status. A new connection for every request."""
    seen = RequestLoop()
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            for url in urls:
                failure = _get(url)
                seen.requests += 1
                if failure:
                    seen.failures.append(f"{url}: {failure}")

    thread = threading.Thread(target=loop, name="request-loop", daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join(timeout=30)


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310
            answer.read()
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}" if url.endswith("/health") else None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
