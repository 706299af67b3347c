"""App hosts over SSH, with Fabric: connect, read pm2's processes, reload, GET the health URL.

One ``Session`` per host, used by one thread at a time. Everything is bounded: the
connection (``connect_timeout``, also for the banner and the authentication), every remote
command (``command_timeout``), every GET. Authentication is the user's: the ssh agent,
``~/.ssh/config`` (Fabric reads it), or the host's ``identity_file``; a key in
``~/.ssh/known_hosts`` that does not match is refused, an unknown one is accepted unless
``strict_host_keys`` (Fabric's default policy, which is ssh's ``accept-new``).

The remote side is POSIX ``sh -c`` (whatever the user's login shell) running the app's
pm2 in its folder, with its PM2_HOME, never starting a pm2 daemon (as locally, a pm2
command would start an empty one): ``jlist``'s output (every process's environment,
secrets included) is parsed here and only ``Process``'s fields are kept.

A health URL on loopback (``http://127.0.0.1:3000/health``) is the host's own loopback:
it is requested through the host's SSH connection (a direct-tcpip channel, as ``ssh -L``
does); any other URL is requested from where predeploy runs.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import shlex
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from predeploy._util.loopback import is_loopback
from predeploy._util.redact import shown_url
from predeploy.config.hosts import AppHost, Rollout
from predeploy.errors import ConfigError, HealthCheckFailed, HostUnreachable
from predeploy.integrations.pm2 import Process, parse_jlist

if TYPE_CHECKING:
    from fabric import Connection

__all__ = ["Answer", "Session", "connect", "get", "pasted", "remote_script"]

# exit codes of the remote script: what went wrong there, before pm2 ran
_NO_APP_DIR, _NO_DAEMON, _NO_PM2 = 90, 91, 92
_TIMED_OUT, _KILLED = 124, 137  # coreutils' timeout: TERM was enough, or KILL was needed
_PM2 = '"$(command -v pm2 2>/dev/null || echo ./node_modules/.bin/pm2)"'
_DEFAULT_HOME = '"${PM2_HOME:-$HOME/.pm2}"'


@dataclass
class Session:
    """One host's SSH connection, and what the first pm2 call found there."""

    host: AppHost
    conn: Connection = field(repr=False)
    timeout: float
    pm2_path: str | None = None  # the pm2 program on the host, once a command ran
    local_pm2: str | None = None  # where this machine's pm2 is: the last place tried there

    def processes(self) -> list[Process]:
        """The app's pm2 processes on the host, now."""
        return parse_jlist(self._pm2("jlist"), self.host.pm2_app, f"pm2 on {self.host.name}")

    def reload(self, *, restart: bool = False) -> None:
        """`pm2 reload APP` on the host (zero-downtime in cluster mode), or `pm2 restart`."""
        self._pm2("restart" if restart else "reload", self.host.pm2_app)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # closing a dead connection must not fail a run
            logging.getLogger(__name__).debug("close failed", exc_info=True)

    def _pm2(self, *args: str) -> str:
        from invoke.exceptions import CommandTimedOut  # noqa: PLC0415 (Fabric's, lazily)

        seconds = max(1, round(self.timeout))
        script = remote_script(self.host, *args, local_pm2=self.local_pm2, seconds=seconds)
        try:
            result = self.conn.run(
                f"sh -c {shlex.quote(script)}",
                hide=True,
                warn=True,
                in_stream=False,
                timeout=seconds + 10,  # the host's own timeout ends it first
            )
        except CommandTimedOut:
            raise HealthCheckFailed(
                f"{self.host.name}: pm2 {args[0]} did not finish within {self.timeout:g}s "
                f"([deploy] command_timeout)"
            ) from None
        except (OSError, EOFError) as exc:
            raise HostUnreachable(f"{self.host.name}: the SSH connection was lost: {exc}") from None
        except Exception as exc:  # paramiko's SSHException family (lost channel, transport)
            raise HostUnreachable(f"{self.host.name}: SSH failed: {_reason(exc)}") from None
        self.pm2_path = _found_program(result.stderr) or self.pm2_path
        if result.exited in (_TIMED_OUT, _KILLED):
            raise HealthCheckFailed(
                f"{self.host.name}: pm2 {args[0]} did not finish within {seconds}s "
                f"([deploy] command_timeout) and was stopped there; pm2's daemon may still be "
                f"at it: see pm2 describe {self.host.pm2_app} on the host"
            )
        if result.exited != 0:
            raise _failure(self.host, args, result.exited, result.stderr, result.stdout)
        return str(result.stdout)


def remote_script(
    host: AppHost, *args: str, local_pm2: str | None = None, seconds: int = 120
) -> str:
    """The sh script that runs ``pm2 ARGS`` in the host's app folder with its PM2_HOME,
    only when that home's daemon is alive; it says which pm2 it ran on stderr. The pm2 is
    the host's ``pm2``, else pm2 on the remote PATH, else node_modules/.bin/pm2 in the app
    folder, else ``local_pm2`` (where this machine's is: hosts laid out alike). Where the
    host has coreutils' ``timeout``, pm2 is killed after ``seconds`` there too."""
    home = _path_word(host.pm2_home) if host.pm2_home else _DEFAULT_HOME
    program = _path_word(host.pm2) if host.pm2 else _PM2
    if not host.pm2 and local_pm2:
        program = (
            '"$(command -v pm2 2>/dev/null || { [ -x ./node_modules/.bin/pm2 ] && '
            f'echo ./node_modules/.bin/pm2; }} || echo {shlex.quote(local_pm2)})"'
        )
    words = " ".join(shlex.quote(a) for a in args)
    return (
        f"cd {_path_word(host.app_dir)} 2>/dev/null || exit {_NO_APP_DIR}\n"
        f"PM2_HOME={home}; export PM2_HOME PM2_DISCRETE_MODE=true FORCE_COLOR=0\n"
        'pid=$(cat "$PM2_HOME/pm2.pid" 2>/dev/null)\n'
        '[ -S "$PM2_HOME/rpc.sock" ] && [ -n "$pid" ] && '
        '{ kill -0 "$pid" 2>/dev/null || [ -d "/proc/$pid" ]; } || '
        f'{{ echo "$PM2_HOME" >&2; exit {_NO_DAEMON}; }}\n'
        f"pm2={program}\n"
        f'[ -x "$pm2" ] || {{ echo "$pm2" >&2; exit {_NO_PM2}; }}\n'
        'echo "predeploy-pm2=$pm2" >&2\n'
        'PATH="$(dirname "$pm2"):$PATH"; export PATH\n'
        # bounded there too: a hung pm2 command must not outlive the run that gave up on it
        f"command -v timeout >/dev/null 2>&1 && exec timeout -k 5 {seconds} \"$pm2\" {words}\n"
        f'exec "$pm2" {words}'
    )


def connect(host: AppHost, rollout: Rollout) -> Session:
    """An open SSH connection to ``host``; HostUnreachable (one line) when it cannot be."""
    from fabric import Config, Connection  # noqa: PLC0415 (0.1 s: only when hosts are used)
    from paramiko import RejectPolicy  # noqa: PLC0415

    _quiet_paramiko()
    seconds = max(1, round(rollout.connect_timeout))
    kwargs: dict[str, Any] = {"banner_timeout": seconds, "auth_timeout": seconds}
    if host.identity_file:
        key = _local_path(host.identity_file)
        if not os.access(key, os.R_OK) or not os.path.isfile(key):
            raise ConfigError(
                f"{host.name}: identity_file {host.identity_file} is not a readable file here: "
                f"give the path of its private key (or drop identity_file: the agent and "
                f"~/.ssh/config are used)"
            )
        kwargs["key_filename"] = [key]
    conn = Connection(
        host.host,
        user=host.user,
        port=host.port,
        config=Config(),
        connect_timeout=seconds,
        connect_kwargs=kwargs,
    )
    try:
        conn.client.load_system_host_keys()
    except OSError as exc:
        raise ConfigError(f"cannot read ~/.ssh/known_hosts: {exc}") from None
    if rollout.strict_host_keys:
        conn.client.set_missing_host_key_policy(RejectPolicy())
    try:
        conn.open()
    except Exception as exc:  # socket errors, timeouts, paramiko's SSHException family
        _key_problem(host, exc)
        raise HostUnreachable(
            f"{host.name} ({host.destination}) is unreachable over SSH: "
            f"{_why_not(exc, seconds)}"
        ) from None
    return Session(host, conn, rollout.command_timeout, local_pm2=rollout.local_pm2)


@dataclass(frozen=True)
class Answer:
    """One GET of a health URL: its status (0: no answer), why it failed, how long."""

    code: int
    reason: str
    ms: float
    blocked: bool = False  # sshd refused to forward to it: no answer can ever come this way

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


def get(session: Session, url: str, timeout: float) -> Answer:
    """GET ``url`` as seen from the session's host (see the module's docstring)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    started = time.perf_counter()
    conn: http.client.HTTPConnection
    if parts.scheme == "http" and is_loopback(host):
        conn = _Tunnelled(session, host, port, timeout)
    elif parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    headers = {"Host": parts.netloc.rpartition("@")[2], "Connection": "close"}
    if parts.username is not None or parts.password is not None:
        token = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
    blocked = False
    try:
        conn.request("GET", path, headers=headers)
        with conn.getresponse() as response:
            response.read(65536)
            code, reason = response.status, f"HTTP {response.status}"
    except (OSError, http.client.HTTPException) as exc:
        code, reason = 0, "timed out" if isinstance(exc, TimeoutError) else _reason(exc)
    except Exception as exc:  # paramiko's ChannelException: the host's sshd said no
        code, reason, blocked = 0, _channel_refused(exc), _prohibited(exc)
    finally:
        conn.close()
    return Answer(code, reason, (time.perf_counter() - started) * 1000, blocked)


def _prohibited(exc: BaseException) -> bool:
    """sshd refuses port forwarding (AllowTcpForwarding no): ChannelException code 1."""
    return getattr(exc, "code", None) == 1


def _channel_refused(exc: BaseException) -> str:
    if _prohibited(exc):
        return (
            "its sshd refuses to forward to it (AllowTcpForwarding no): allow forwarding "
            "there, or give a health_url reachable from here"
        )
    if getattr(exc, "code", None) == 2:
        return "connection refused on the host (nothing listens there)"
    return f"the SSH connection cannot reach it: {_reason(exc)}"


def pasted(session: Session, *args: str) -> str:
    """An ``ssh`` command line that runs ``pm2 ARGS`` on the host when pasted."""
    host = session.host
    words = ["ssh"]
    if host.port:
        words += ["-p", str(host.port)]
    if host.identity_file:
        words += ["-i", host.identity_file]
    target = f"{host.user}@{host.host}" if host.user else host.host
    program = session.pm2_path or host.pm2 or "pm2"
    home = f"PM2_HOME={_path_word(host.pm2_home)} " if host.pm2_home else ""
    remote = f"cd {_path_word(host.app_dir)} && {home}{shlex.quote(program)} " + " ".join(
        shlex.quote(a) for a in args
    )
    return " ".join(shlex.quote(w) for w in [*words, target]) + " " + shlex.quote(remote)


def describe(session: Session) -> str:
    """``web2 (deploy@10.0.0.12:22)`` and its health URL, masked."""
    url = f", {shown_url(session.host.health_url)}" if session.host.health_url else ""
    return f"{session.host.name} ({session.host.destination}{url})"


class _Tunnelled(http.client.HTTPConnection):
    """HTTP over a direct-tcpip channel of the host's SSH connection."""

    def __init__(self, session: Session, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._session = session

    def connect(self) -> None:
        transport = self._session.conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise OSError(f"the SSH connection to {self._session.host.name} is closed")
        channel = transport.open_channel(
            "direct-tcpip", (self.host, self.port), ("127.0.0.1", 0), timeout=self.timeout
        )
        channel.settimeout(self.timeout)
        self.sock = channel


def _failure(
    host: AppHost, args: tuple[str, ...], code: int, stderr: str, stdout: str
) -> Exception:
    said = _last_line(stderr)
    if code == _NO_APP_DIR:
        return ConfigError(f"{host.name}: app_dir {host.app_dir} does not exist there")
    if code == _NO_DAEMON:
        return ConfigError(
            f"{host.name}: no pm2 daemon runs for PM2_HOME {said or host.pm2_home} there, so "
            f"{host.pm2_app} cannot be online: set pm2_home to the app's pm2 folder, or start "
            f"the app there (pm2 start ecosystem.config.js); pm2 was not run"
        )
    if code == _NO_PM2:
        where = (
            f"not at {host.pm2}"
            if host.pm2
            else f"not on the remote PATH nor in {host.app_dir}/node_modules/.bin"
        )
        return ConfigError(
            f"{host.name}: no pm2 there ({where}): set pm2 = its absolute path on the host "
            f"in its [[hosts]] entry"
        )
    reason = said if not said.startswith("predeploy-pm2=") else _last_line(stdout)
    return HealthCheckFailed(
        f"{host.name}: pm2 {' '.join(args)} failed: {reason or f'exit {code}'}"
    )


def _found_program(stderr: str) -> str | None:
    for line in stderr.splitlines():
        if line.startswith("predeploy-pm2="):
            return line.partition("=")[2].strip() or None
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _path_word(path: str) -> str:
    """A shell word for a path on the host: ``~/x`` keeps its meaning ($HOME/x)."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _local_path(path: str) -> str:
    from pathlib import Path  # noqa: PLC0415

    return str(Path(path).expanduser())


def _key_problem(host: AppHost, exc: BaseException) -> None:
    """The host's identity_file is not a key paramiko can use: ConfigError naming it."""
    from paramiko import PasswordRequiredException  # noqa: PLC0415

    if not host.identity_file:
        return
    if isinstance(exc, PasswordRequiredException):
        raise ConfigError(
            f"{host.name}: identity_file {host.identity_file} is passphrase-protected: load "
            f"it into the ssh agent (ssh-add {host.identity_file}) and drop identity_file"
        ) from None
    if "private key" in str(exc).lower():
        raise ConfigError(
            f"{host.name}: identity_file {host.identity_file} is not a private key predeploy "
            f"can use ({_reason(exc)})"
        ) from None


def _why_not(exc: BaseException, seconds: int) -> str:
    """Why a connection failed, in words an operator acts on."""
    from paramiko import AuthenticationException, BadHostKeyException  # noqa: PLC0415

    errors = getattr(exc, "errors", None)  # NoValidConnectionsError: one per address tried
    if isinstance(errors, dict) and errors:
        exc = next(iter(errors.values()))
    said = str(exc)
    reasons = (
        (
            isinstance(exc, ConnectionRefusedError),
            "connection refused (is sshd running there, on that port?)",
        ),
        (isinstance(exc, TimeoutError), f"no answer within {seconds}s ([deploy] connect_timeout)"),
        (
            isinstance(exc, BadHostKeyException),
            "its host key does not match ~/.ssh/known_hosts: if the host was rebuilt, check "
            "its key and update known_hosts (ssh-keygen -R)",
        ),
        (
            isinstance(exc, AuthenticationException),
            f"authentication failed ({_reason(exc)}): no key from the ssh agent, "
            f"~/.ssh/config or identity_file was accepted",
        ),
        (
            "not found in known_hosts" in said,
            "its host key is not in ~/.ssh/known_hosts ([deploy] strict_host_keys = true)",
        ),
        (
            "banner" in said or "No existing session" in said,
            f"no SSH answer within {seconds}s (is sshd the program on that port?)",
        ),
        (
            "No authentication methods available" in said,
            "no key to offer: no ssh agent (SSH_AUTH_SOCK), no identity_file, no key in "
            "~/.ssh or ~/.ssh/config for it",
        ),
    )
    return next((why for matched, why in reasons if matched), _reason(exc))


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:300]


def _quiet_paramiko() -> None:
    """paramiko logs its transport's errors (a refused banner, a reset) at ERROR, which
    Python's last-resort handler would print: the run reports them itself, in one line."""
    logger = logging.getLogger("paramiko")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    logger.propagate = False
