"""Running PostgreSQL's client programs (pg_dump, pg_restore) safely.

Programs run with argv lists, never a shell, through `subprocess` (`sh` was measured
at ~0.1 s of polling latency per call, which a backup paid five times). The connection goes in
argv as a libpq conninfo *without* the password; the password reaches the child
through a temporary passfile (0600, removed afterwards), so it never shows in
`/proc/<pid>/cmdline` or in a process list.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from psycopg.conninfo import make_conninfo

from predeploy.config.dburl import DatabaseUrl

__all__ = ["ClientRun", "ProgramFailed", "Tee", "client", "failure", "run", "run_output"]

_SIGNALS: dict[int, str] = {
    signal.SIGXFSZ: "SIGXFSZ: the file size limit was reached",
    signal.SIGKILL: "SIGKILL",
    signal.SIGTERM: "SIGTERM",
    signal.SIGINT: "SIGINT",
}


@dataclass(frozen=True)
class ClientRun:
    """How a client program reaches the database: argv-safe conninfo and environment."""

    conninfo: str
    env: dict[str, str]


class ProgramFailed(Exception):
    """A client program exited non-zero or was killed; ``reason`` is one line."""

    def __init__(self, program: str, reason: str) -> None:
        super().__init__(f"{program} {reason}")
        self.program, self.reason = program, reason


@contextmanager
def client(url: DatabaseUrl, application_name: str) -> Iterator[ClientRun]:
    """The conninfo (no password) and environment (a passfile) for one program run."""
    params = url.connect_params()
    password = params.pop("password", None)
    params["application_name"] = application_name
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    with tempfile.TemporaryDirectory(prefix="predeploy-") as folder:
        if password:
            passfile = Path(folder) / "pgpass"
            fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(f"*:*:*:*:{_escape(password)}\n")
            env["PGPASSFILE"] = str(passfile)
        yield ClientRun(conninfo=make_conninfo("", **params), env=env)


def run(
    program: Path,
    args: list[str],
    *,
    env: dict[str, str],
    on_stderr: Callable[[str], None] | None = None,
) -> None:
    """Run ``program`` to completion; ProgramFailed with its last error line otherwise."""
    _run(program, args, env=env, on_stderr=on_stderr, stdout=None)


def run_output(program: Path, args: list[str], *, env: dict[str, str] | None = None) -> str:
    """Run ``program`` and return what it printed on stdout."""
    chunks: list[bytes] = []
    _run(program, args, env=dict(os.environ) if env is None else env, on_stderr=None, stdout=chunks)
    return b"".join(chunks).decode("utf-8", "replace")


def _run(
    program: Path,
    args: list[str],
    *,
    env: dict[str, str],
    on_stderr: Callable[[str], None] | None,
    stdout: list[bytes] | None,
) -> None:
    try:
        child = subprocess.Popen(
            [str(program), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if stdout is None else subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise ProgramFailed(program.name, f"could not be run: {exc.strerror or exc}") from None
    assert child.stderr is not None  # noqa: S101 (piped above)
    lines: list[str] = []
    drain = threading.Thread(target=_drain, args=(child.stderr, lines, on_stderr))
    drain.start()
    if stdout is not None and child.stdout is not None:
        source = child.stdout
        stdout.extend(iter(lambda: source.read(1 << 16), b""))
    code = child.wait()
    drain.join()
    if code != 0:
        raise failure(program, code, lines)


def failure(program: Path, returncode: int, stderr: list[str]) -> ProgramFailed:
    """The one-line reason of a program's exit: its signal, or its last error line."""
    if returncode < 0:
        name = _SIGNALS.get(-returncode, f"signal {-returncode}")
        return ProgramFailed(program.name, f"was killed by {name}")
    errors = [line for line in stderr if "error:" in line] or stderr or ["(no message)"]
    detail = errors[-1].split("error:", 1)[-1].strip()
    return ProgramFailed(program.name, f"failed (exit {returncode}): {detail}")


class Tee:
    """`producer | (file, sha256, consumer)`: one program's output kept and checked at once.

    The bytes the producer writes go to ``target``, into a running SHA-256, and to
    the consumer's stdin, while both programs' stderr lines are collected. Used to
    verify a dump while it is being written, instead of reading it again afterwards.
    """

    CHUNK = 1 << 20

    def __init__(self, target: Path) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.write_error: OSError | None = None
        self.consumer_gone = False

    def run(
        self,
        producer: tuple[Path, list[str], dict[str, str]],
        consumer: tuple[Path, list[str], dict[str, str]],
        on_producer_line: Callable[[str], None],
    ) -> tuple[int, list[str], int, list[str]]:
        """Run both; returns (producer exit, its stderr, consumer exit, its stderr)."""
        (p_prog, p_args, p_env), (c_prog, c_args, c_env) = producer, consumer
        made = subprocess.Popen(
            [str(p_prog), *p_args],
            env=p_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # the checker runs at a lower priority: on a small machine it must take only
        # what pg_dump and the server leave, or the backup itself slows down
        check = subprocess.Popen(
            [str(c_prog), *c_args],
            env=c_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_lower_priority,  # noqa: PLW1509 (only os.nice: safe after fork)
        )
        assert made.stdout and made.stderr and check.stdin and check.stderr  # noqa: S101
        made_lines: list[str] = []
        check_lines: list[str] = []
        drains = [
            threading.Thread(target=_drain, args=(made.stderr, made_lines, on_producer_line)),
            threading.Thread(target=_drain, args=(check.stderr, check_lines, None)),
        ]
        for thread in drains:
            thread.start()
        try:
            self._pump(made.stdout, check.stdin)
        finally:
            if self.write_error is not None:
                made.kill()
            with contextlib.suppress(OSError):
                check.stdin.close()
            made_code, check_code = made.wait(), check.wait()
            for thread in drains:
                thread.join()
        return made_code, made_lines, check_code, check_lines

    def _pump(self, source: IO[bytes], sink: IO[bytes]) -> None:
        with self.target.open("r+b") as out:
            while chunk := source.read(self.CHUNK):
                try:
                    out.write(chunk)
                except OSError as exc:
                    self.write_error = exc
                    return
                self.sha256.update(chunk)
                self.size += len(chunk)
                if not self.consumer_gone:
                    try:
                        sink.write(chunk)
                    except BrokenPipeError:
                        self.consumer_gone = True
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                self.write_error = exc


def _lower_priority() -> None:
    os.nice(10)


def _drain(stream: IO[bytes], lines: list[str], on_line: Callable[[str], None] | None) -> None:
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip()
        lines.append(line)
        del lines[:-50]
        if on_line is not None:
            on_line(line)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")
