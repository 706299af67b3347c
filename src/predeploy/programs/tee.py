"""A dump checked while it is written: one program's output to a file, a SHA-256 and a
checker's stdin at once, both programs run by the one runner."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from predeploy.programs.pgclient import ClientRun
from predeploy.programs.run import Pipe, Running, start

__all__ = ["Tee"]


class Tee:
    """`producer | (file, sha256, consumer)`: one program's output kept and checked at once.

    The bytes the producer writes go to ``target``, into a running SHA-256, and through a
    kernel pipe into the consumer's stdin. Used to verify a dump while it is written,
    instead of reading it again afterwards.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.write_error: OSError | None = None
        self._file: IO[bytes] | None = None
        self._pipe: Pipe | None = None

    def write(self, chunk: bytes) -> None:
        """Called by sh's output thread with each chunk the producer wrote."""
        if self.write_error is not None or self._file is None:
            return
        try:
            self._file.write(chunk)
        except OSError as exc:
            self.write_error = exc
            return
        self.sha256.update(chunk)
        self.size += len(chunk)
        if self._pipe is not None:
            self._pipe.write(chunk)

    def run(
        self,
        producer: tuple[Path, list[str], ClientRun],
        consumer: tuple[Path, list[str], dict[str, str]],
        on_producer_line: Callable[[str], None],
        timeout: float | None = None,
    ) -> tuple[Running, int, Running, int]:
        """Run both; returns each program and its exit code."""
        (p_prog, p_args, p_client), (c_prog, c_args, c_env) = producer, consumer
        self._pipe = pipe = Pipe()
        made = check = None
        try:
            with self.target.open("r+b") as self._file:
                # the checker runs at a lower priority: on a small machine it must take only
                # what pg_dump and the server leave, or the backup itself slows down
                check = start(c_prog, c_args, env=c_env, stdin=pipe.reader, nice=True)
                pipe.detach_reader()
                made = start(
                    p_prog,
                    p_args,
                    env=p_client.env,
                    stdout=self,
                    on_stderr=on_producer_line,
                    pass_fds=p_client.pass_fds,
                )
                made_code = made.wait(timeout)
                if self.write_error is not None:
                    check.kill()
                pipe.close()
                check_code = check.wait(timeout)
                self._flush()
            return made, made_code, check, check_code
        except BaseException:
            for running in (made, check):
                if running is not None:
                    running.kill()
            raise
        finally:
            pipe.close()
            self._file = None

    def _flush(self) -> None:
        assert self._file is not None  # noqa: S101 (called inside run's with block)
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            self.write_error = self.write_error or exc
