"""A program on a real pseudo-terminal, with someone typing at its prompts."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time
from pathlib import Path

__all__ = ["run_in_terminal"]


def _controlling_terminal() -> None:
    """The pty becomes /dev/tty, as in a login session."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def run_in_terminal(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    answer: str = "",
    prompt: bytes = b"",
    dialogue: list[tuple[bytes, str]] | None = None,
    timeout: float = 60,
) -> tuple[int, str]:
    """Run ``argv`` on a real pseudo-terminal, type ``answer`` at ``prompt`` (or each answer
    of ``dialogue`` at its prompt, in turn); (exit, screen)."""
    turns = list(dialogue) if dialogue is not None else [(prompt, answer)]
    master, slave = os.openpty()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=_controlling_terminal,  # noqa: PLW1509 (setsid and an ioctl only)
    )
    os.close(slave)
    screen, seen = b"", 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        if turns and turns[0][0] in screen[seen:]:
            seen = screen.index(turns[0][0], seen) + len(turns[0][0])
            os.write(master, turns.pop(0)[1].encode() + b"\n")
        if proc.poll() is not None and not ready:
            break
    os.close(master)
    code = proc.wait(timeout=10)
    return code, screen.decode("utf-8", "replace")
