"""Running PostgreSQL's client programs (pg_dump, pg_restore) safely.

Programs run through `sh` with argv lists, never a shell. The connection goes in
argv as a libpq conninfo *without* the password; the password reaches the child
through a temporary passfile (0600, removed afterwards), so it never shows in
`/proc/<pid>/cmdline` or in a process list.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sh
from psycopg.conninfo import make_conninfo

from predeploy.dburl import DatabaseUrl

__all__ = ["ClientRun", "ProgramFailed", "client", "run", "run_output"]

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
    _run(program, args, env=env, on_stderr=on_stderr, out=os.devnull)


def run_output(program: Path, args: list[str], *, env: dict[str, str] | None = None) -> str:
    """Run ``program`` and return what it printed on stdout."""
    chunks: list[str] = []
    _run(
        program,
        args,
        env=dict(os.environ) if env is None else env,
        on_stderr=None,
        out=chunks.append,
    )
    return "".join(chunks)


def _run(
    program: Path,
    args: list[str],
    *,
    env: dict[str, str],
    on_stderr: Callable[[str], None] | None,
    out: str | Callable[[str], None],
) -> None:
    lines: list[str] = []

    def collect(line: str) -> None:
        lines.append(line.rstrip())
        del lines[:-50]
        if on_stderr is not None:
            on_stderr(line.rstrip())

    try:
        sh.Command(str(program))(*args, _env=env, _err=collect, _out=out)
    except sh.SignalException as exc:
        number = -int(exc.exit_code)
        name = _SIGNALS.get(number, f"signal {number}")
        raise ProgramFailed(program.name, f"was killed by {name}") from None
    except sh.ErrorReturnCode as exc:
        errors = [line for line in lines if "error:" in line] or lines or ["(no message)"]
        detail = errors[-1].split("error:", 1)[-1].strip()
        raise ProgramFailed(program.name, f"failed (exit {exc.exit_code}): {detail}") from None
    except sh.CommandNotFound:
        raise ProgramFailed(program.name, f"could not be run: {program} not found") from None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")
