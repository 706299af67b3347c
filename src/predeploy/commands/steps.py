"""Steps of a run (migrate, deploy, maintenance): each recorded with outcome and duration."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import structlog

from predeploy._util.log import FILE_ONLY
from predeploy.errors import PredeployError

__all__ = ["OnStep", "Skip", "Step", "Stepper", "add", "note", "skip", "stepper"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Step:
    name: str
    outcome: str  # ok, skipped, failed, interrupted
    seconds: float
    detail: str | None = None


class Skip(Exception):
    """Raised inside ``with step(name):`` when it finds it cannot do its work: the step is
    recorded as skipped, for ``detail``, with the time it took to find out."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


OnStep = Callable[[Step], None]
Stepper = Callable[[str], AbstractContextManager[None]]


def stepper(steps: list[Step], on_step: OnStep | None) -> Stepper:
    """``with step("name"):`` records the block as a step: ok, failed with the error, or
    skipped (``raise Skip(detail)``)."""

    @contextmanager
    def step(name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except Skip as exc:
            _add(steps, on_step, Step(name, "skipped", time.perf_counter() - started, exc.detail))
            return
        except PredeployError as exc:
            _add(steps, on_step, Step(name, "failed", time.perf_counter() - started, str(exc)))
            raise
        except KeyboardInterrupt:  # SIGINT or SIGTERM: the step is named in the report
            _add(steps, on_step, Step(name, "interrupted", time.perf_counter() - started))
            raise
        _add(steps, on_step, Step(name, "ok", time.perf_counter() - started))

    return step


def skip(
    steps: list[Step], on_step: OnStep | None, *names: str, detail: str, seconds: float = 0.0
) -> None:
    """Record ``names`` as skipped, for ``detail`` (after ``seconds`` spent finding out)."""
    for name in names:
        _add(steps, on_step, Step(name, "skipped", seconds, detail))


def note(
    steps: list[Step], on_step: OnStep | None, name: str, detail: str, seconds: float = 0.0
) -> None:
    """Record ``name`` as done, with ``detail`` (a decision the checklist shows)."""
    _add(steps, on_step, Step(name, "ok", seconds, detail))


def add(steps: list[Step], on_step: OnStep | None, done: Step) -> None:
    """Record ``done``, a step that ran elsewhere (a host's reload, in its own thread)."""
    _add(steps, on_step, done)


def _add(steps: list[Step], on_step: OnStep | None, done: Step) -> None:
    steps.append(done)
    emit = log.error if done.outcome == "failed" else log.info
    # a caller that shows the step itself (a checklist line) gets it once, not twice
    shown = {FILE_ONLY: True} if on_step is not None else {}
    emit("step", step=done.name, outcome=done.outcome, seconds=round(done.seconds, 3), **shown)
    if on_step is not None:
        on_step(done)
