"""_util.poll: the one bounded wait (tries, pauses, the deadline) and the backoff schedule."""

from __future__ import annotations

import itertools
import time

import pytest

from predeploy._util.poll import backoff, poll


def _answers(*values: object) -> tuple[list[object], object]:
    calls: list[object] = []
    left = list(values)

    def probe() -> object:
        answer = left.pop(0) if left else values[-1]
        calls.append(answer)
        return answer

    return calls, probe


@pytest.mark.parametrize(
    ("answers", "wait", "expected", "tries"),
    [
        ((True,), 5.0, True, 1),  # done at once: no sleep
        ((False, False, True), 5.0, True, 3),  # done on the third try
        ((False,), 0.0, False, 1),  # no time: one try, the last answer back
        (([], [], ["x"]), 5.0, ["x"], 3),  # truthiness is the default rule
    ],
)
def test_poll_returns_the_last_answer(
    answers: tuple[object, ...], wait: float, expected: object, tries: int
) -> None:
    calls, probe = _answers(*answers)
    assert poll(probe, wait, pause=0.001) == expected  # type: ignore[arg-type]
    assert len(calls) == tries


def test_poll_stops_at_the_deadline_and_never_sleeps_past_it() -> None:
    started = time.monotonic()
    assert poll(lambda: False, 0.2, pause=10.0) is False
    assert 0.2 <= time.monotonic() - started < 1.0


def test_poll_done_rule_and_waiting_hook() -> None:
    _, probe = _answers([1], [1], [])
    seen: list[object] = []
    assert poll(probe, 5.0, pause=0.001, done=lambda f: not f, waiting=seen.append) == []  # type: ignore[arg-type]
    assert seen == [[1], [1]]  # told before each sleep, never after the last try


def test_poll_pause_grows_to_its_cap() -> None:
    stamps: list[float] = []

    def probe() -> bool:
        stamps.append(time.monotonic())
        return len(stamps) == 5

    poll(probe, 5.0, pause=0.01, grow=2, most=0.03)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps[0] >= 0.01 and gaps[1] >= 0.02 and gaps[2] >= 0.03
    assert all(g < 0.3 for g in gaps)


@pytest.mark.parametrize(
    ("attempt", "pause"), [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 10.0), (20, 10.0)]
)
def test_backoff_doubles_to_its_cap(attempt: int, pause: float) -> None:
    assert backoff(attempt, 0.5, 10.0) == pause
