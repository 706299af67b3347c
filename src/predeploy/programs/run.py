"""The one program runner: every program (pg_dump, pg_restore, psql, pm2, squawk, git) runs
through `sh`, here only; what is particular to a program lives in its own module
(``programs.pgclient``: a PostgreSQL client's conninfo and passfile; ``programs.tee``: a
dump checked while it is written; ``programs.git``; pm2's adapter in integrations/pm2.py,
squawk's in migrate/lint.py).

`sh` is used the way it was measured to cost ~10 ms a call (FIELD-NOTES): `_bg=True` with a
timer that kills (never `_timeout`, whose watcher polls), `_in` always set, `_out` a
file-like sink (raw bytes, never decoded), `_tty_out=False` and a large output buffer.
Programs get argv lists, never a shell, and an environment built from an allowlist: no
DATABASE_URL, no password.

Every child is killed when the code waiting for it is interrupted (SIGINT, SIGTERM) or
fails, so that no program outlives the run that started it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import sh

__all__ = [
    "Collect",
    "Pipe",
    "ProgramFailed",
    "Running",
    "child_env",
    "kill_programs",
    "output",
    "run",
    "start",
]

_SIGNALS: dict[int, str] = {
    signal.SIGXFSZ: "SIGXFSZ: the file size limit was reached",
    signal.SIGKILL: "SIGKILL",
    signal.SIGTERM: "SIGTERM",
    signal.SIGINT: "SIGINT",
}
# variables a child may inherit; PG* connection settings are never inherited (the
# connection is passed explicitly), LC_* and the program-specific ones by prefix
_ALLOWED = frozenset(
    {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "PGSSLCERT", "PGSSLKEY"}
)
_ALLOWED_PREFIXES = ("LC_",)
_OK_CODES = list(range(-64, 256))  # every exit is ours to judge, signals included
_KEEP_LINES = 50


class ProgramFailed(Exception):
    """A program exited non-zero, was killed or could not start; ``reason`` is one line."""

    def __init__(self, program: str, reason: str, *, code: int | None = None) -> None:
        super().__init__(f"{program} {reason}")
        self.program, self.reason, self.code = program, reason, code


def child_env(
    extra: Mapping[str, str] | None = None, *, keep: Sequence[str] = ()
) -> dict[str, str]:
    """The allowlisted part of this process's environment, plus ``extra``.

    ``keep`` names further variables (or prefixes ending in ``*``) a program needs, such
    as PM2_HOME for pm2.
    """
    prefixes = _ALLOWED_PREFIXES + tuple(k[:-1] for k in keep if k.endswith("*"))
    names = _ALLOWED | {k for k in keep if not k.endswith("*")}
    env = {k: v for k, v in os.environ.items() if k in names or k.startswith(prefixes)}
    env.update(extra or {})
    return env


class _Lines:
    """The last lines a program wrote on stderr, each also handed to ``on_line``."""

    def __init__(self, on_line: Callable[[str], None] | None) -> None:
        self.lines: list[str] = []
        self.on_line = on_line

    def __call__(self, line: str) -> None:
        text = line.rstrip("\n")
        self.lines.append(text)
        del self.lines[:-_KEEP_LINES]
        if self.on_line is not None:
            self.on_line(text)


@dataclass
class Running:
    """A started program: wait for it (bounded), or kill it."""

    name: str
    process: Any  # sh.RunningCommand
    stderr: _Lines
    closers: list[IO[bytes]] = field(default_factory=list)
    timed_out: bool = False

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code (negative: the signal that killed it); killed after ``timeout`` s."""
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, self._expire)
            timer.daemon = True
            timer.start()
        try:
            self.process.wait()
        except BaseException:
            self.kill()
            raise
        finally:
            if timer is not None:
                timer.cancel()
            for stream in self.closers:
                stream.close()
        return int(self.process.exit_code)

    def kill(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            self.process.kill()
        with contextlib.suppress(Exception):
            self.process.wait()

    def failure(self, code: int) -> ProgramFailed:
        """The one-line reason of a failed exit: its signal, or its last error line."""
        if self.timed_out:
            return ProgramFailed(self.name, "did not finish in time and was stopped", code=code)
        if code < 0:
            name = _SIGNALS.get(-code, f"signal {-code}")
            return ProgramFailed(self.name, f"was killed by {name}", code=code)
        lines = [line for line in self.stderr.lines if line.strip()]
        # "pg_dump: error: ...", and psql's "psql:<stdin>:12: ERROR:  ..." (then DETAIL,
        # HINT and CONTEXT lines, which say less)
        errors = [line for line in lines if "error:" in line.lower()] or lines or ["(no message)"]
        at = errors[-1].lower().find("error:")
        detail = (errors[-1][at + len("error:") :] if at >= 0 else errors[-1]).strip()
        return ProgramFailed(self.name, f"failed (exit {code}): {detail}", code=code)

    def _expire(self) -> None:
        self.timed_out = True
        with contextlib.suppress(Exception):
            self.process.kill()


def start(
    program: Path,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    stdin: bytes | IO[bytes] | None = None,
    stdout: Any = None,
    on_stderr: Callable[[str], None] | None = None,
    pass_fds: Sequence[int] = (),
    cwd: Path | None = None,
    nice: bool = False,
    uid: int | None = None,
) -> Running:
    """Start ``program`` with ``args``; ``stdout`` is an object with ``write(bytes)``.

    ``uid``: as root, the user it runs as (PostgreSQL's server programs refuse root)."""
    stdin, stdout, closers = _null_streams(stdin, stdout)
    lines = _Lines(on_stderr)
    options = _options(
        stdin, stdout, lines, env=env, pass_fds=pass_fds, cwd=cwd, nice=nice, uid=uid
    )
    try:
        command = sh.Command(str(program))
        process = command(*args, _bg=True, **options)
    except (sh.CommandNotFound, OSError) as exc:
        for stream in closers:
            stream.close()
        reason = getattr(exc, "strerror", None) or "not found or not executable"
        raise ProgramFailed(program.name, f"could not be run ({program}): {reason}") from None
    running = Running(program.name, process, lines, closers)
    _RUNNING.setdefault(threading.get_ident(), weakref.WeakValueDictionary())[id(running)] = running
    return running


# the programs each thread started, for kill_programs
_RUNNING: dict[int, weakref.WeakValueDictionary[int, Running]] = {}


def kill_programs(thread: int) -> None:
    """Kill every program ``thread`` started that still runs; never raises. A signal reaches
    only the main thread: a fleet's worker blocked in waitpid() for pg_dump takes the
    interrupt raised in it (fleet_schedule) only once the program is gone."""
    for running in list(_RUNNING.get(thread, {}).values()):
        with contextlib.suppress(Exception):  # already gone
            running.process.kill()


def _options(
    stdin: bytes | IO[bytes],
    stdout: Any,
    lines: _Lines,
    *,
    env: Mapping[str, str],
    pass_fds: Sequence[int],
    cwd: Path | None,
    nice: bool,
    uid: int | None,
) -> dict[str, Any]:
    """sh's options for a program started in the background."""
    options: dict[str, Any] = {
        "_bg_exc": False,
        "_in": stdin,
        "_out": stdout,
        "_err": lines,
        "_decode_errors": "replace",  # stderr lines only: stdout goes raw to the sink
        "_tty_out": False,
        "_env": dict(env),
        "_pass_fds": set(pass_fds),
        "_cwd": str(cwd) if cwd else None,
        "_ok_code": _OK_CODES,
        "_preexec_fn": _lower_priority if nice else None,
        "_uid": uid,
    }
    if not hasattr(stdout, "fileno"):  # a sink of ours gets large chunks; a file is the child's
        options["_out_bufsize"] = 1 << 20
    return options


def _null_streams(
    stdin: bytes | IO[bytes] | None, stdout: Any
) -> tuple[bytes | IO[bytes], Any, list[IO[bytes]]]:
    """/dev/null for the streams not given, and those to close when the program ends."""
    closers: list[IO[bytes]] = []
    if stdin is None:
        stdin = open(os.devnull, "rb")  # noqa: SIM115 (closed by Running.wait)
        closers.append(stdin)
    if stdout is None:
        stdout = open(os.devnull, "wb")  # noqa: SIM115 (closed by Running.wait)
        closers.append(stdout)
    return stdin, stdout, closers


def run(
    program: Path,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float | None,
    on_stderr: Callable[[str], None] | None = None,
    stdout: Any = None,
    stdin: bytes | IO[bytes] | None = None,
    pass_fds: Sequence[int] = (),
    cwd: Path | None = None,
    uid: int | None = None,
) -> None:
    """Run ``program`` to completion within ``timeout``; ProgramFailed otherwise."""
    running = start(
        program,
        args,
        env=env,
        stdin=stdin,
        stdout=stdout,
        on_stderr=on_stderr,
        pass_fds=pass_fds,
        cwd=cwd,
        uid=uid,
    )
    code = running.wait(timeout)
    if code != 0:
        raise running.failure(code)


class Collect:
    """A stdout sink that keeps what a program printed."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")


def output(
    program: Path,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    cwd: Path | None = None,
    ok_codes: Sequence[int] = (0,),
    stdin: bytes | None = None,
) -> str:
    """What ``program`` printed on stdout; ProgramFailed unless it exits with ``ok_codes``."""
    sink = Collect()
    running = start(
        program, args, env=child_env() if env is None else env, stdout=sink, cwd=cwd, stdin=stdin
    )
    code = running.wait(timeout)
    if code not in ok_codes:
        raise running.failure(code)
    return sink.text()


class Pipe:
    """A kernel pipe from this process's writes to a child's stdin.

    Start the child with ``stdin=pipe.reader``, then ``detach_reader()`` (so that a child
    that dies makes writes fail instead of filling the pipe), ``write()``, and ``close()``
    to give it end-of-file. ``write`` is the sink of another program's stdout, too.
    """

    def __init__(self) -> None:
        read_end, write_end = os.pipe()
        self._fd: int | None = write_end
        self.reader: IO[bytes] = os.fdopen(read_end, "rb")
        self.broken = False

    def detach_reader(self) -> None:
        self.reader.close()

    def write(self, chunk: bytes) -> None:
        if self._fd is None or self.broken:
            return
        try:
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:  # the reader is gone: its exit code tells why
            self.broken = True

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if not self.reader.closed:
            self.reader.close()


def _lower_priority() -> None:
    os.nice(10)
