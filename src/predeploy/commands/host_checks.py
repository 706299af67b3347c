"""The app hosts' side of health: connect to each host, and is its app healthy?

A host is healthy when every pm2 process of its app is online and its health URL answers
2xx (as seen from that host: ``integrations.hosts``). ``check_all`` checks every host at
once, one ``Check`` per host (``health --env prod``, and a deploy's last look);
``healthy`` waits for one host to become healthy (a deploy's gate after its reload).
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from predeploy._util.poll import poll
from predeploy._util.redact import shown_url
from predeploy.commands.health import Check
from predeploy.config.hosts import AppHost, Rollout
from predeploy.config.settings import Settings
from predeploy.errors import InternalError, PredeployError
from predeploy.integrations import hosts
from predeploy.integrations.hosts import Session
from predeploy.integrations.pm2 import Process, find_program

__all__ = [
    "Probe",
    "as_checks",
    "check_all",
    "connect_all",
    "each",
    "healthy",
    "probe",
    "with_local_pm2",
]

log = structlog.get_logger(__name__)
T = TypeVar("T")
_PAUSE = 1.0


@dataclass(frozen=True)
class Probe:
    """One look at a host's app: its processes, its health URL's answer, the verdict."""

    ok: bool
    detail: str
    processes: list[Process] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid > 0]  # an errored process has pid 0


def probe(session: Session, settings: Settings) -> Probe:
    """pm2's processes of the host's app, then (all online) its health URL, once."""
    host = session.host
    try:
        processes = session.processes()
    except PredeployError as exc:
        return Probe(False, exc.message.removeprefix(f"{host.name}: "))
    if not processes:
        return Probe(False, f"pm2 there has no process named {host.pm2_app}", processes)
    down = [f"{p.name}#{p.pm_id} {p.status}" for p in processes if p.status != "online"]
    if down:
        said = f"{len(down)} of {len(processes)} not online: {', '.join(down)}"
        return Probe(False, said, processes)
    online = f"{host.pm2_app} {len(processes)} online"
    if host.health_url is None:
        return Probe(True, f"{online} (no health_url)", processes)
    answer = hosts.get(session, host.health_url, settings.healthcheck_timeout)
    said = f"GET {shown_url(host.health_url)}: {answer.reason}"
    if answer.ok:
        said += f" in {answer.ms:.0f} ms"
    return Probe(answer.ok, f"{online}, {said}", processes)


def healthy(session: Session, settings: Settings, wait: float, stop: threading.Event) -> Probe:
    """Probe the host until it is healthy, ``wait`` seconds pass or ``stop`` is set."""
    return poll(
        lambda: probe(session, settings),
        wait,
        pause=_PAUSE,
        done=lambda p: p.ok or stop.is_set(),
        sleep=stop.wait,
    )


def with_local_pm2(settings: Settings, rollout: Rollout) -> Rollout:
    """``rollout`` knowing where this machine's pm2 is (the last place tried on a host)."""
    try:
        found = str(find_program(settings.pm2).absolute())
    except PredeployError:
        return rollout
    return dataclasses.replace(rollout, local_pm2=found)


def connect_all(rollout: Rollout) -> tuple[dict[str, Session], dict[str, PredeployError]]:
    """An SSH session to every host at once: the sessions, and the hosts that failed."""
    results = each(rollout.hosts, lambda h: hosts.connect(h, rollout))
    sessions = {n: r for n, r in results.items() if isinstance(r, Session)}
    failed = {n: r for n, r in results.items() if isinstance(r, PredeployError)}
    return sessions, failed


def check_all(settings: Settings, rollout: Rollout) -> list[Check]:
    """One check per host, all at once, each on a connection of its own (bounded by its
    connect and command timeouts and the health URL's timeout)."""

    def one(host: AppHost) -> Check:
        started = time.perf_counter()
        try:
            session = hosts.connect(host, rollout)
        except PredeployError as exc:
            return Check(f"host {host.name}", False, exc.message, time.perf_counter() - started)
        try:
            return _checked(session, settings, started)
        finally:
            session.close()

    rollout = with_local_pm2(settings, rollout)
    return as_checks(each(rollout.hosts, one))


def check_sessions(settings: Settings, sessions: dict[str, Session]) -> list[Check]:
    """One check per host on its open session (a deploy's last look), all at once."""
    ready = [session.host for session in sessions.values()]
    return as_checks(
        each(ready, lambda h: _checked(sessions[h.name], settings, time.perf_counter()))
    )


def _checked(session: Session, settings: Settings, started: float) -> Check:
    """The host's check: one probe, as a health line."""
    found = probe(session, settings)
    data = {"destination": session.host.destination, "pids": found.pids}
    name = f"host {session.host.name}"
    return Check(name, found.ok, found.detail, time.perf_counter() - started, data)


def as_checks(results: dict[str, Check | PredeployError]) -> list[Check]:
    """Every host's check, a host whose check raised included, failed with its message."""
    return [
        c if isinstance(c, Check) else Check(f"host {name}", False, c.message, 0.0)
        for name, c in results.items()
    ]


def each(items: Sequence[AppHost], work: Callable[[AppHost], T]) -> dict[str, T | PredeployError]:
    """``work(host)`` for every host at once, in threads; the results by host name, in
    the hosts' order (a PredeployError is a result: the others go on)."""
    found: dict[str, T | PredeployError] = {}

    def run(host: AppHost) -> None:
        try:
            found[host.name] = work(host)
        except PredeployError as exc:
            found[host.name] = exc
        except Exception as exc:  # a bug must fail the host, never drop it from the report
            log.exception("host_check_crashed", host=host.name)
            found[host.name] = InternalError(f"{host.name}: {type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(run, h), daemon=True)
        for h in items
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        h.name: found.get(h.name, InternalError(f"{h.name}: its check did not finish"))
        for h in items
    }
