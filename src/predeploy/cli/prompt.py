"""Questions on the controlling terminal (/dev/tty), never on stdout.

`predeploy migrate --env staging > out.json` must still ask the operator, on their
terminal, and keep out.json a clean report. Without a controlling terminal (cron, CI, a pm2
hook) there is nobody to ask: ``interactive()`` is False and the gates refuse (exit 8)
unless --yes was given.
"""

from __future__ import annotations

import os

from predeploy.cli import output

__all__ = ["ask", "interactive"]

_TTY = "/dev/tty"


def interactive() -> bool:
    """True when a controlling terminal can be asked."""
    try:
        fd = os.open(_TTY, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def ask(question: str) -> str:
    """Write ``question`` to the terminal and read one line of answer from it."""
    fd = os.open(_TTY, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, output.mask(question).encode())
        answer = bytearray()
        while not answer.endswith(b"\n"):
            chunk = os.read(fd, 1024)
            if not chunk:
                if not answer:
                    raise EOFError
                break
            answer += chunk
    finally:
        os.close(fd)
    return answer.decode("utf-8", "replace").rstrip("\r\n")
