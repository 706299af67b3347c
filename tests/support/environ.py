"""The environment the suite's children get: none of a developer's predeploy, app or libpq
settings leak into a test, and no child shares the suite's controlling terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["OUR_VARIABLES", "clean_environ", "detach_children", "venv_first_on_path"]


def _ours(name: str) -> bool:
    """A variable of predeploy's, the app's database URLs, or libpq's: none may leak from a
    developer's shell into the tests."""
    from predeploy.config.names import KNOWN_SETTINGS  # noqa: PLC0415

    urls = ("DATABASE_URL", "DIRECT_DATABASE_URL", "DIRECT_URL", "SHADOW_DATABASE_URL")
    kept = ("PREDEPLOY_TEST_DSN",)
    return (
        (name in KNOWN_SETTINGS and name not in kept)
        or name in urls
        or name in ("PM2_HOME", "NO_COLOR")
        or (name.startswith("PG") and name not in ("PGTZ",))
    )


OUR_VARIABLES = (*(name for name in os.environ if _ours(name)), "DATABASE_URL", "PREDEPLOY_ENV")


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without any of OUR_VARIABLES, plus ``extra``."""
    environ = {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES}
    environ.update(extra)
    return environ


_popen_init = subprocess.Popen.__init__


def _detached(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
    if kwargs.get("preexec_fn") is None:
        kwargs.setdefault("start_new_session", True)
    _popen_init(self, *args, **kwargs)


def detach_children() -> None:
    """No child of the suite may share its controlling terminal: typed in a terminal, a
    product that asks on /dev/tty would wait there (CI, with no terminal, passes). Every
    program the suite starts gets a session of its own, unless the test sets up a terminal
    itself (preexec_fn: run_in_terminal's setsid + TIOCSCTTY) or says otherwise."""
    subprocess.Popen.__init__ = _detached  # type: ignore[method-assign]


def venv_first_on_path() -> None:
    """The suite behaves the same with the venv activated (CI) or not (`.venv/bin/pytest`):
    its `predeploy` is first on PATH, so runbook lines name it `predeploy`."""
    os.environ["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), os.environ["PATH"]))
