"""A deploy's app step over many hosts: waves of `pm2 reload` over SSH, each host gated.

    the rollout lock (one deploy at a time over the env's hosts)
    → preflight (every host at once: SSH, pm2 daemon, the app's processes, the health
      URL reachable through SSH)
      → [the database's pre-deploy migrations, once, by ``commands.deploy``]
      → for each wave of ``serial`` hosts: `pm2 reload` on each, then wait until each is
        healthy (its processes online, its health URL 2xx) for at most ``wait``
      → [post-deploy migrations, then health on every host]

An unreachable host at preflight stops the deploy before anything changed (exit 3). A host
that fails its gate counts against ``max_fail``: past it, no new wave starts, and the hosts
not reached keep the release they ran. SIGINT/SIGTERM/SIGHUP stop the rollout between
hosts: a reload in flight is let finish (it is bounded by ``command_timeout``) and its host
is reported ``interrupted`` (reloaded, health not confirmed); a second signal stops the
waiting too, and such a host is reported with its reload in flight.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog

from predeploy._util.log import REPORTED
from predeploy._util.redact import shown_url
from predeploy.commands.host_checks import Probe, connect_all, each, healthy, probe
from predeploy.commands.steps import Step
from predeploy.config.hosts import Rollout
from predeploy.config.settings import Settings
from predeploy.db import target as db_target
from predeploy.db.connect import catalog_session
from predeploy.db.locks import ROLLOUT_LOCK, advisory_lock
from predeploy.errors import ConfigError, HealthCheckFailed, HostUnreachable, PredeployError
from predeploy.integrations.hosts import Session, get

__all__ = [
    "HostResult",
    "Rolling",
    "dry_run",
    "one_at_a_time",
    "preflight",
    "roll",
]

log = structlog.get_logger(__name__)
RELOADED, FAILED, NOT_REACHED, INTERRUPTED = "reloaded", "failed", "not reached", "interrupted"
WOULD_RELOAD = "would reload"  # a dry run's


@dataclass
class HostResult:
    """What became of one host in a rollout."""

    name: str
    destination: str
    wave: int
    outcome: str = NOT_REACHED
    pids_before: list[int] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    detail: str = ""
    seconds: float = 0.0
    reloaded: bool = False  # pm2 finished the reload there (the new release runs)
    in_flight: bool = False  # the reload was running when the rollout stopped waiting
    cluster: bool = True
    warning: str | None = None  # found at preflight: it answered badly before the deploy
    abandoned: bool = False  # a second signal: the rollout stopped waiting for this host

    @property
    def new_release(self) -> bool:
        """The host may run the new release (reloaded, or the reload was in flight)."""
        return self.reloaded or self.in_flight

    @property
    def release(self) -> str:
        """Which release the host runs: new, previous, or "new or previous" (a reload that
        was in flight when the rollout stopped waiting)."""
        if self.in_flight:
            return "new or previous"
        return "new" if self.reloaded else "previous"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "destination": self.destination,
            "wave": self.wave,
            "outcome": self.outcome,
            "release": self.release,
            "pids": self.pids,
            "pids_before": self.pids_before,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Rolling:
    """A rollout's hosts: their sessions (after preflight) and results, in the file's order."""

    rollout: Rollout
    sessions: dict[str, Session] = field(default_factory=dict)
    results: list[HostResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # found at preflight (fork mode)

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()

    def by_outcome(self, outcome: str) -> list[str]:
        return [r.name for r in self.results if r.outcome == outcome]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.results]


@contextmanager
def one_at_a_time(settings: Settings) -> Iterator[None]:
    """For the block, the env's rollout lock (advisory lock ROLLOUT_LOCK on its database,
    its own session): a second deploy over the same hosts waits PREDEPLOY_LOCK_WAIT, then
    LockBusy (exit 6) naming the first, before it looks at any host."""
    target = db_target.of(settings)
    with (
        catalog_session(target.direct, purpose="rollout") as conn,
        advisory_lock(conn, ROLLOUT_LOCK, wait=settings.lock_wait, purpose="rollout"),
    ):
        yield


def preflight(rolling: Rolling, settings: Settings) -> None:
    """Every host reachable, its pm2 daemon alive and its app running; else the error
    (HostUnreachable, exit 3; ConfigError, exit 2) naming every host that is not, with
    nothing changed anywhere. Fills ``rolling``'s sessions and results."""
    rollout = rolling.rollout
    for wave, hosts in enumerate(rollout.waves(), start=1):
        rolling.results += [HostResult(h.name, h.destination, wave) for h in hosts]
    rolling.sessions, failed = connect_all(rollout)
    by_name = {r.name: r for r in rolling.results}
    ready = [h for h in rollout.hosts if h.name in rolling.sessions]
    looked = each(ready, lambda h: _look(rolling.sessions[h.name], by_name[h.name], settings))
    found: dict[str, PredeployError] = {
        **failed,
        **{n: e for n, e in looked.items() if isinstance(e, PredeployError)},
    }
    for name, exc in found.items():
        by_name[name].detail = exc.message
    if found:
        _refuse(rolling, found)
    rolling.warnings += _fork_mode(rolling)
    rolling.warnings += [r.warning for r in rolling.results if r.warning]


def _look(session: Session, result: HostResult, settings: Settings) -> None:
    """One host at preflight: its processes now, and its health URL tried; raises what
    would make its gate impossible (no such app, a URL SSH will never reach: sshd refuses
    forwarding). An app that answers badly now is a warning: the new release may fix it."""
    host = session.host
    processes = session.processes()
    result.pids_before = result.pids = [p.pid for p in processes if p.pid > 0]
    result.cluster = all(p.cluster for p in processes)
    if not processes:
        raise ConfigError(
            f"{host.name}: pm2 there has no process named {host.pm2_app}: start the app "
            f"once there (pm2 start ecosystem.config.js), then deploy"
        )
    if host.health_url is None:
        return
    shown = shown_url(host.health_url)
    answer = get(session, host.health_url, settings.healthcheck_timeout)
    if answer.blocked:
        raise HostUnreachable(f"{host.name}: cannot check {shown}: {answer.reason}")
    if not answer.ok:
        result.warning = (
            f"{host.name} was not healthy before this deploy (GET {shown}: {answer.reason}): "
            f"if its health_url is right, its gate after the reload may fail"
        )
        log.warning("host_unhealthy_before", host=host.name, detail=result.warning)


def _fork_mode(rolling: Rolling) -> list[str]:
    forked = [r.name for r in rolling.results if not r.cluster]
    if not forked:
        return []
    warning = (
        f"the app runs in fork mode on {', '.join(forked)}: pm2 reload restarts it there "
        f"(requests during the restart can fail); exec_mode 'cluster' makes reloads "
        f"zero-downtime"
    )
    log.warning("pm2_fork_mode_reload", hosts=forked, detail=warning)
    return [warning]


def _refuse(rolling: Rolling, found: dict[str, PredeployError]) -> None:
    for name, exc in found.items():
        log.error("host_not_ready", host=name, detail=exc.message, **{REPORTED: True})
    rolling.close()
    first_name, first = next(iter(found.items()))
    others = [name for name in found if name != first_name]
    more = f" (and {len(others)} more host(s): {', '.join(others)})" if others else ""
    error = type(first)(f"{first.message}{more}; nothing was changed on any host or database")
    raise error


def roll(
    settings: Settings,
    rolling: Rolling,
    *,
    restart: bool,
    on_step: Callable[[Step], None],
) -> None:
    """The waves; raises HealthCheckFailed (exit 7) when a host failed, a KeyboardInterrupt
    (the signal's) when stopped; ``rolling.results`` says what became of every host."""
    rollout = rolling.rollout
    run = _Run(settings, restart, rollout.wait or settings.deploy_wait, on_step)
    waves = sorted({r.wave for r in rolling.results})
    signal: KeyboardInterrupt | None = None
    for wave in waves:
        if signal is not None or not _within_budget(rolling):
            break
        batch = [r for r in rolling.results if r.wave == wave]
        log.info("wave", wave=wave, of=len(waves), hosts=[r.name for r in batch])
        signal = run.wave(rolling, batch) or signal
    if signal is not None:
        raise signal
    failed = rolling.by_outcome(FAILED)
    if failed:
        raise HealthCheckFailed(_failed_line(rolling, failed))


def _failed_line(rolling: Rolling, failed: list[str]) -> str:
    budget, stopped = rolling.rollout.max_fail, rolling.by_outcome(NOT_REACHED)
    head = f"{len(failed)} of {len(rolling.results)} host(s) failed: {', '.join(failed)} "
    if not _within_budget(rolling):
        left = (
            f"the rollout stopped, {', '.join(stopped)} not reached (still the previous release)"
            if stopped
            else "no host was left to reload"
        )
        return head + (
            f"(past [deploy] max_fail {budget}): {left}; the post-deploy migrations were not "
            f"applied"
        )
    return head + (
        f"(within [deploy] max_fail {budget}): the rollout went on; the post-deploy "
        f"migrations were not applied"
    )


def _within_budget(rolling: Rolling) -> bool:
    failed = len(rolling.by_outcome(FAILED))
    return rolling.rollout.max_fail.allows(failed, len(rolling.results))


@dataclass
class _Run:
    """One rollout's settings, and the event that stops its workers between steps."""

    settings: Settings
    restart: bool
    wait: float  # seconds a reloaded host has to be healthy
    on_step: Callable[[Step], None]
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def action(self) -> str:
        return "restart" if self.restart else "reload"

    def wave(self, rolling: Rolling, batch: list[HostResult]) -> KeyboardInterrupt | None:
        """Reload and gate every host of the wave at once; the main thread collects them
        as they end (and takes the signals). Returns the signal that stopped it, if one did."""
        done: queue.Queue[HostResult] = queue.Queue()
        for result in batch:
            session = rolling.sessions[result.name]
            result.outcome, result.in_flight = INTERRUPTED, True  # until the worker says
            context = contextvars.copy_context()  # the run's log fields (run id, env)
            threading.Thread(
                target=context.run,
                args=(self._host, session, result, done),
                name=f"host-{result.name}",
                daemon=True,
            ).start()
        signal: KeyboardInterrupt | None = None
        waiting = {r.name for r in batch}
        while waiting:
            try:
                ended = done.get(timeout=0.2)
            except queue.Empty:
                continue
            except KeyboardInterrupt as exc:
                if signal is not None:  # a second signal: stop waiting for the reloads
                    self._abandon([r for r in batch if r.name in waiting])
                    return signal
                signal = exc
                self.stop.set()
                log.warning("rollout_stopping", detail="letting the reloads in flight finish")
                continue
            waiting.discard(ended.name)
            step = Step(f"host {ended.name}", _step_outcome(ended), ended.seconds, ended.detail)
            self.on_step(step)
        return signal

    def _host(self, session: Session, result: HostResult, done: queue.Queue[HostResult]) -> None:
        """A worker: the host's reload and gate; its verdict is published unless the
        rollout stopped waiting for it (then what the main thread said stands)."""
        started = time.perf_counter()
        try:
            outcome, detail, pids = self._reload_and_gate(session, result)
        except Exception as exc:  # a host's failure is its result, never the run's crash
            said = exc.message if isinstance(exc, PredeployError) else repr(exc)
            outcome, detail, pids = FAILED, said, result.pids
        with self.lock:
            if not result.abandoned:
                result.outcome, result.detail, result.pids = outcome, detail, pids
                # a reload that failed or timed out may have happened (pm2's daemon goes on):
                # still "in flight" as far as anyone can tell
                result.in_flight = result.in_flight and outcome == FAILED
                result.seconds = time.perf_counter() - started
                done.put(result)

    def _reload_and_gate(self, session: Session, result: HostResult) -> tuple[str, str, list[int]]:
        if self.stop.is_set():  # the signal came before this host's reload started
            return NOT_REACHED, "stopped before", result.pids
        session.reload(restart=self.restart)
        result.reloaded, result.in_flight = True, False  # progress the main thread reads
        log.info("host_reloaded", host=result.name, action=self.action)
        stopped = self.stop.is_set()
        found = (
            probe(session, self.settings)
            if stopped
            else healthy(session, self.settings, self.wait, self.stop)
        )
        return (*self._verdict(found), found.pids or result.pids)

    def _verdict(self, found: Probe) -> tuple[str, str]:
        did = f"{self.action}ed"
        if found.ok:
            return RELOADED, f"{did}, healthy: {found.detail}"
        if self.stop.is_set():
            return INTERRUPTED, f"{did}; stopped before it was found healthy: {found.detail}"
        return FAILED, f"not healthy {self.wait:g}s after the {self.action}: {found.detail}"

    def _abandon(self, unfinished: list[HostResult]) -> None:
        """A second signal: the hosts still in flight are left as they are, said so."""
        with self.lock:
            for result in unfinished:
                result.abandoned, result.outcome = True, INTERRUPTED
                result.detail = (
                    f"{self.action}ed; stopped before it was found healthy"
                    if result.reloaded
                    else f"its pm2 {self.action} was in flight when the rollout stopped: "
                    f"it may have run"
                )


def _step_outcome(result: HostResult) -> str:
    return {RELOADED: "ok", FAILED: "failed", NOT_REACHED: "skipped"}.get(
        result.outcome, "interrupted"
    )


def dry_run(rolling: Rolling) -> None:
    """What a deploy would do on each host: every host ``would reload``, by wave."""
    for result in rolling.results:
        result.outcome = WOULD_RELOAD
        result.detail = "pm2 reload, then its health gate"
