"""Polling with a deadline and a backoff: the one loop every bounded wait uses.

``poll`` calls a probe until its answer is done or the deadline has passed, pausing between
tries (a pause that may grow up to a cap, never past the deadline); it returns the last
answer, so the caller says what a timeout means. ``backoff`` is the pause schedule of
retries that count tries rather than seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["backoff", "poll"]

T = TypeVar("T")


def poll(
    probe: Callable[[], T],
    wait: float,
    *,
    pause: float,
    done: Callable[[T], bool] = bool,
    grow: float = 1.0,
    most: float | None = None,
    waiting: Callable[[T], None] | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """``probe()`` until ``done(answer)`` or ``wait`` seconds have passed; the last answer.

    The probe runs at least once. Between tries it sleeps ``pause`` (times ``grow`` after
    each try, at most ``most``), never past the deadline; ``waiting(answer)`` is called
    before each sleep (to say once that it waits, say); ``sleep`` pauses (an Event's
    ``wait``: a pause another thread can cut short).
    """
    deadline = time.monotonic() + wait
    cap = pause if most is None else most
    while True:
        answer = probe()
        remaining = deadline - time.monotonic()
        if done(answer) or remaining <= 0:
            return answer
        if waiting is not None:
            waiting(answer)
        sleep(min(pause, remaining))
        pause = min(pause * grow, cap)


def backoff(attempt: int, first: float, most: float) -> float:
    """The pause before retry ``attempt`` (1-based): ``first`` doubling up to ``most``."""
    return min(first * 2.0 ** (attempt - 1), most)
