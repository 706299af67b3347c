"""Where a command's output goes, and how it looks.

Results go to stdout: human-readable text, or one JSON object with ``--json``, whatever
stdout is (a pipe, a file). Logs go to stderr: readable warnings and errors on a terminal
(with ``--json`` too: stdout is the machine's, a terminal is a person's), JSON lines from
info up otherwise; ``-v`` shows every event, ``-q`` only errors.
Colour only on a terminal, never with ``NO_COLOR`` set or ``--no-color``. Prompts go to
the controlling terminal (see ``predeploy.cli.prompt``), never to stdout.

A reader that goes away (``predeploy migrate | head``: EPIPE; a terminal that hung up:
EIO) never changes what a run does: ``guard_streams`` makes stdout and stderr discard what
follows instead of raising, so the run goes on, writes its runbook and audit row, and ends
with its own exit code. So does a file on a full disk (``predeploy migrate > out.log``:
ENOSPC, EDQUOT, EFBIG), said once in the run's log file (and on stderr for stdout).

Every secret is masked on the way out (``set_scrubber``: the settings' one, set once the
settings are read): the results, the step lines and the final error line.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from predeploy._util.redact import Scrubber

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "Output",
    "colors",
    "current",
    "emit",
    "guard_streams",
    "log_level",
    "mask",
    "set_current",
    "set_scrubber",
    "stdout_lost",
]


@dataclass(frozen=True)
class Output:
    """The global flags: ``-v``/``-q`` and ``--no-color``."""

    verbosity: int = 0  # -1 quiet, 0 normal, 1 verbose
    no_color: bool = False


_current = Output()


def set_current(output: Output) -> None:
    """Set by the program from its core flags, before a task runs."""
    global _current  # noqa: PLW0603 (the CLI's own flags, read by its adapters only)
    _current = output


def current() -> Output:
    return _current


def colors() -> bool:
    """Colour on stderr: a terminal, no NO_COLOR, no --no-color."""
    return sys.stderr.isatty() and not os.environ.get("NO_COLOR") and not _current.no_color


def log_level(json_output: bool) -> int:
    """What stderr shows. On a terminal the steps and the report tell the story: warnings and
    errors only (``-v``: every event), with ``--json`` too (its info lines buried the typed
    question). Elsewhere (cron, CI) every event from info up, as JSON lines. ``-q``: errors
    only. The log file always has every event. ``json_output`` no longer changes it."""
    del json_output  # the report's format, not the log's: stderr follows where it goes
    if _current.verbosity < 0:
        return 40
    if _current.verbosity > 0:
        return 10
    return 30 if sys.stderr.isatty() else 20


_scrubber = Scrubber()  # until the settings are read: what stands in a password's place


def set_scrubber(scrubber: Scrubber) -> None:
    """Set by a task once it has read the settings (they know the run's secrets)."""
    global _scrubber  # noqa: PLW0603 (one command per process, like its flags)
    _scrubber = scrubber


def mask(text: str) -> str:
    """``text`` with every secret masked: for whatever the CLI writes itself."""
    return _scrubber.text(text)


_emitted = False  # a JSON result is on stdout already (a failure adds none of its own)


def emitted() -> bool:
    """Whether this command has put its JSON result on stdout."""
    return _emitted


def emit(data: dict[str, Any], human: str, json_output: bool) -> None:
    """A command's result on stdout: one JSON object with --json, else the human text."""
    global _emitted  # noqa: PLW0603 (one command per process)
    if json_output:
        _emitted = True
        print(json.dumps(_scrubber.value(data), default=str, sort_keys=True), flush=True)
    elif human:
        print(mask(human), flush=True)


class _Discarding(io.RawIOBase):
    """A standard stream's file descriptor that, on the first EPIPE or EIO, becomes
    /dev/null (dup2): what follows is discarded, never an exception in the middle of a run."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: ReadableBuffer) -> int:
        try:
            return os.write(self._fd, data)
        except OSError as exc:
            if exc.errno not in _GONE and exc.errno not in _FULL:
                raise
            _to_devnull(self._fd)
            _lost.add(self._fd)
            if exc.errno in _FULL:
                _said_lost(self._fd, exc)
        return memoryview(data).nbytes


_lost: set[int] = set()  # the standard streams that were turned into /dev/null


def stdout_lost() -> bool:
    """Whether what this command writes to stdout has stopped reaching anyone (its reader
    went away, its file's disk is full, it was closed)."""
    return 1 in _lost


_GONE = (errno.EPIPE, errno.EIO)  # its reader went away
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a file on a disk that filled up


def _said_lost(fd: int, exc: OSError) -> None:
    """A stream lost to a full disk, said once: stderr's in the log file only (saying it on
    stderr would write into the stream being written), stdout's on stderr too."""
    import structlog  # noqa: PLC0415 (a rare path)

    from predeploy._util.log import FILE_ONLY  # noqa: PLC0415

    name = "stdout" if fd == 1 else "stderr"
    where = {FILE_ONLY: True} if fd == 2 else {}
    structlog.get_logger("predeploy").warning(
        f"{name}_unwritable",
        detail=f"cannot write {name}: {exc.strerror}; the run goes on without it",
        **where,
    )


def _to_devnull(fd: int) -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def guard_streams() -> None:
    """stdout and stderr that survive their reader going away (see the module's doc); a
    closed descriptor 1 or 2 becomes /dev/null, so that no file opened later takes its place."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        before = getattr(sys, name)
        if isinstance(getattr(getattr(before, "buffer", None), "raw", None), _Discarding):
            continue
        if not _is_open(fd):
            _to_devnull(fd)
            _lost.add(fd)
        elif before is not None:
            try:
                before.flush()
            except OSError:
                _to_devnull(fd)
                _lost.add(fd)
        stream = io.TextIOWrapper(
            io.BufferedWriter(_Discarding(fd)),
            encoding=getattr(before, "encoding", None) or "utf-8",
            errors=getattr(before, "errors", None) or "backslashreplace",
            line_buffering=bool(getattr(before, "line_buffering", False)) or fd == 2,
        )
        setattr(sys, name, stream)
