"""Progress of long program runs (dumps, verification), reported about once a second."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from predeploy.backup.archive import size_of

__all__ = ["Progress", "ProgressFn", "Reporter"]


@dataclass(frozen=True)
class Progress:
    """How far a dump, verification or restore has come."""

    phase: str
    tables_done: int
    tables_total: int
    bytes_done: int
    final: bool = False  # the last report of this phase


ProgressFn = Callable[[Progress], None]


class Reporter:
    """Calls ``progress`` about once a second while a program works (on ``path``, whose
    size is the bytes done; None when there is nothing to measure)."""

    def __init__(
        self,
        phase: str,
        path: Path | None,
        total: int,
        done: list[int],
        progress: ProgressFn | None,
    ) -> None:
        self.phase, self.path, self.total, self.done, self.progress = (
            phase,
            path,
            total,
            done,
            progress,
        )
        self.stop = threading.Event()
        # the reports are logged with the run's env and run id: the thread runs in a copy
        # of the context that bound them
        context = contextvars.copy_context()
        self.thread = threading.Thread(target=lambda: context.run(self._loop), daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(1.0):
            self._report()

    def _report(self, final: bool = False) -> None:
        if self.progress is not None:
            done = min(self.done[0], self.total)
            size = size_of(self.path) if self.path is not None else 0
            self.progress(Progress(self.phase, done, self.total, size, final))

    def __enter__(self) -> Reporter:
        if self.progress is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        self._report(final=True)  # also after a failure: a terminal's line is cleared
