"""A predeploy command line as an operator pastes it: the program's name, the words quoted.

Runbooks, backup manifests and messages name a command to run next; each is written so
that it runs when pasted (``command``), naming this installation as the shell finds it
(``program``).
"""

from __future__ import annotations

import functools
import shlex
import shutil
import sys
from pathlib import Path

__all__ = ["PROGRAM", "command", "program", "targeted"]

PROGRAM = "predeploy"


def command(*words: str) -> str:
    """A predeploy command line that runs when pasted, every word shell-quoted."""
    return " ".join(shlex.quote(w) for w in (program(), *words))


@functools.cache
def program() -> str:
    """How a pasted line names this installation: ``predeploy`` when PATH finds it, else
    its script by absolute path (installed as the README says, ``.venv/bin/predeploy``, the
    venv not activated, a bare ``predeploy`` is "command not found", or another version)."""
    script = Path(sys.executable).parent / PROGRAM
    if not script.is_file():
        return PROGRAM  # not run from an installation (python -m in a source tree)
    found = shutil.which(PROGRAM)
    if found is not None and Path(found).resolve() == script.resolve():
        return PROGRAM
    return str(script)


def targeted(line: str, target: str) -> str:
    """``line`` with ``--target TARGET`` after its ``--env ENV`` when it is a predeploy
    command (after any ``NAME=value`` prefix): a fleet target's runbook line, pasted, acts
    on that target. Comments and other programs' lines are left as they are."""
    if line.lstrip().startswith("#"):
        return line
    try:
        words = shlex.split(line)
    except ValueError:
        return line
    at = next((i for i, w in enumerate(words) if "=" not in w), None)
    if at is None or Path(words[at]).name != PROGRAM or "--target" in words:
        return line
    env = words.index("--env") + 2 if "--env" in words else len(words)
    prefix = line[: line.index(shlex.quote(words[at]))] if at else ""
    return prefix + " ".join(
        shlex.quote(w) for w in (*words[at:env], "--target", target, *words[env:])
    )
