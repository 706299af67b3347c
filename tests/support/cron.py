"""Commands run as cron runs them: an empty environment (`env -i`) but for a minimal PATH,
HOME and what the crontab line itself sets; no terminal, a session of their own."""

from __future__ import annotations

import subprocess
from pathlib import Path


def as_cron(
    argv: list[str], *, home: Path, cwd: Path | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in cron's environment (``extra``: the variables the crontab sets)."""
    return subprocess.run(
        [
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            f"HOME={home}",
            *(f"{k}={v}" for k, v in extra.items()),
            *argv,
        ],
        cwd=home if cwd is None else cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
