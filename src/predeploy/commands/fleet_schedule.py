"""Running one command over many targets: a concurrency cap (overall and per server),
groups in order (a group starts once the one before succeeded: canaries first), a failure
budget, and signals.

Each target runs in a worker thread, in its own copy of the run's context (its log lines
carry ``target=<name>``), exactly as a single run of the command would. SIGINT and SIGTERM
reach the main thread: it starts nothing more and raises the same interrupt in every
worker still running, where it does what it does in a single run (psycopg cancels the
running statement, pg_dump is killed, the run writes its audit row and runbook); the
report names what was interrupted and what never started.
"""

from __future__ import annotations

import contextvars
import ctypes
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from predeploy.commands.fleet_report import (
    FAILED,
    INTERRUPTED,
    NOT_STARTED,
    TargetResult,
)
from predeploy.commands.fleet_targets import Placed
from predeploy.config.fleet import Budget
from predeploy.db.connect import cancel_sessions, interruptible_waits
from predeploy.errors import Terminated
from predeploy.programs.run import kill_programs

__all__ = ["Limits", "Work", "schedule"]

log = structlog.get_logger(__name__)

# one target's work: (its placement, its result to fill in) -> None; never raises
Work = Callable[[Placed, TargetResult], None]
OnDone = Callable[[TargetResult], None]
_GRACE = 10.0  # after a signal: how long the workers get to stop as a single run does
_FINISH_WAIT = 50.0  # then, their running statements cancelled: how long before giving up


@dataclass(frozen=True)
class Limits:
    concurrency: int
    per_server: int | None
    budget: Budget
    groups: tuple[str, ...]  # the groups' order; empty: every target as one group
    gated: bool = True  # the budget and the canary groups stop it (a read-only verb: never)


def schedule(
    placed: Sequence[Placed],
    results: dict[str, TargetResult],
    work: Work,
    limits: Limits,
    on_done: OnDone | None = None,
) -> str | None:
    """Runs ``work`` for each of ``placed`` (in order, group by group) within ``limits``;
    returns why it stopped early (None when every target ran). A KeyboardInterrupt or
    Terminated is raised again once the workers have stopped."""
    run = _Schedule(results, work, limits, on_done, total=len(placed))
    groups = _groups(placed) if limits.groups else [list(placed)]  # no order: one group
    try:
        with interruptible_waits():
            _groups_in_order(run, groups)
    except KeyboardInterrupt as exc:
        run.stopped = f"stopped by {getattr(exc, 'signal', 'SIGINT')}"
        with interruptible_waits():
            run.interrupt(exc)
        raise
    return run.stopped


def _groups_in_order(run: _Schedule, groups: list[list[Placed]]) -> None:
    """Each group once the one before succeeded (a failure in it stops the groups after)."""
    for number, group in enumerate(groups, 1):
        run.group(group)
        if run.stopped is not None:
            return
        failed = [p.name for p in group if run.results[p.name].outcome == FAILED]
        if failed and number < len(groups) and run.limits.gated:
            run.stopped = (
                f"group {group[0].member.group} failed ({', '.join(failed[:5])}): "
                f"the groups after it were not started"
            )
            return


def _groups(placed: Sequence[Placed]) -> list[list[Placed]]:
    """``placed`` cut where the group changes (they come ordered by group)."""
    groups: list[list[Placed]] = []
    for p in placed:
        if groups and groups[-1][0].member.group == p.member.group:
            groups[-1].append(p)
        else:
            groups.append([p])
    return groups


@dataclass
class _Schedule:
    """What the main thread knows: who runs (on which server), who failed, why it stopped."""

    results: dict[str, TargetResult]
    work: Work
    limits: Limits
    on_done: OnDone | None
    total: int
    running: dict[str, threading.Thread] = field(default_factory=dict)
    servers: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    stopped: str | None = None
    finished: queue.Queue[str] = field(default_factory=queue.Queue)

    def group(self, group: list[Placed]) -> None:
        """Every target of ``group`` started as the caps allow, until all have finished
        (or the budget stops the starting: the rest is left not started)."""
        waiting = list(group)
        while waiting or self.running:
            while self.stopped is None and (chosen := self._next(waiting)) is not None:
                waiting.remove(chosen)
                self._start(chosen)
            if not self.running:
                break
            self._collect(_take(self.finished))
            while not self.finished.empty():
                self._collect(self.finished.get_nowait())

    def _next(self, waiting: list[Placed]) -> Placed | None:
        """The first waiting target the caps let start now."""
        if len(self.running) >= self.limits.concurrency:
            return None
        cap = self.limits.per_server
        return next(
            (p for p in waiting if cap is None or self.servers.get(p.server, 0) < cap), None
        )

    def _start(self, p: Placed) -> None:
        result, work, finished = self.results[p.name], self.work, self.finished

        def body() -> None:
            structlog.contextvars.bind_contextvars(target=p.name)
            started = time.perf_counter()
            try:
                work(p, result)
            except KeyboardInterrupt:  # raised here, outside the command's own run
                if result.outcome == NOT_STARTED:
                    result.outcome, result.error = INTERRUPTED, "interrupted"
            except BaseException as exc:
                log.exception("fleet_target_crashed", detail=str(exc))
                result.outcome, result.error, result.exit_code = FAILED, f"internal error: {exc}", 9
            finally:
                result.seconds = time.perf_counter() - started
                finished.put(p.name)

        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(body,), name=p.name, daemon=True)
        self.running[p.name] = thread
        self.servers[p.server] = self.servers.get(p.server, 0) + 1
        result.detail["_server"] = p.server
        thread.start()

    def _collect(self, name: str) -> None:
        self.running.pop(name).join()
        result = self.results[name]
        self.servers[result.detail.pop("_server")] -= 1
        if result.outcome == FAILED:
            self.failures += 1
            if (
                self.stopped is None
                and self.limits.gated
                and not self.limits.budget.allows(self.failures, self.total)
            ):
                self.stopped = (
                    f"max_fail = {self.limits.budget} was exceeded when {name} failed "
                    f"({self.failures} failed by then): no new target was started"
                )
        if self.on_done is not None:
            self.on_done(result)

    def interrupt(self, exc: KeyboardInterrupt) -> None:
        """Every worker still running gets the interrupt the process got, and its running
        statement cancelled; each stops as a single run would, within ``_FINISH_WAIT``."""
        raised = _same_as(exc)
        for thread in list(self.running.values()):
            if thread.ident is not None:  # first: a worker blocked in waitpid() for pg_dump
                kill_programs(thread.ident)  # must run Python again to take the interrupt
            _raise_in(thread, raised)
        self._wait(_GRACE)
        for thread in list(self.running.values()):  # still in a statement: cancelled
            if thread.ident is not None:
                cancel_sessions(thread.ident)
        self._wait(_FINISH_WAIT)
        for name in self.running:  # did not stop in time: said so, left to the server
            self.results[name].outcome = INTERRUPTED
            self.results[name].error = "still stopping when the fleet run ended: see its audit row"

    def _wait(self, seconds: float) -> None:
        """Collect the workers that finish within ``seconds``."""
        deadline = time.monotonic() + seconds
        while self.running and time.monotonic() < deadline:
            try:
                self._collect(self.finished.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                return
            except KeyboardInterrupt:  # a second signal: the workers have theirs already
                continue


def _take(finished: queue.Queue[str]) -> str:
    """The next target to finish (waited for in short slices: a signal is taken at once)."""
    while True:
        try:
            return finished.get(timeout=0.5)
        except queue.Empty:
            continue


def _same_as(exc: KeyboardInterrupt) -> type[BaseException]:
    """The class to raise in a worker for ``exc``: Ctrl-C's, SIGTERM's or SIGHUP's."""
    if not isinstance(exc, Terminated):
        return KeyboardInterrupt
    signum = exc.exit_code - 128
    if signum == signal.SIGTERM:
        return Terminated
    return type("Hangup", (Terminated,), {"__init__": lambda s: Terminated.__init__(s, signum)})


def _raise_in(thread: threading.Thread, kind: type[BaseException]) -> None:
    """``kind`` raised in ``thread`` at its next Python instruction: the polls and psycopg's
    Python wait wake often enough to take it; a wait in waitpid() is ended by killing the
    program first (``interrupt``): until the interrupt is taken, a traced thread (coverage,
    a debugger) may spin on Python 3.11. A wait in libpq past the grace: its session is
    cancelled."""
    ident = thread.ident
    if ident is None or not thread.is_alive():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(kind))
