"""Modules imported on first use: each command pays only for the modules it runs.

    if TYPE_CHECKING:
        from predeploy.commands import migrate as workflow
    else:
        workflow = lazy.module("predeploy.commands.migrate")

The module's code runs the first time one of its attributes is read (importlib's
LazyLoader); type checkers see the ordinary import. `predeploy status` never needs the
backup, deploy or lint machinery, and so never imports it.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

__all__ = ["load_all", "module"]

_WAITING: list[ModuleType] = []  # made lazily, maybe not loaded yet


def module(name: str) -> ModuleType:
    """The module ``name``, to be executed when first used (at once if already imported)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    lazy = importlib.util.module_from_spec(spec)
    sys.modules[name] = lazy
    loader.exec_module(lazy)
    _WAITING.append(lazy)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, lazy)
    return lazy


def load_all() -> None:
    """Load every lazy module now, and those their code makes lazy in turn: importlib's
    LazyLoader is not thread-safe before Python 3.12 (two threads reading a first
    attribute at once can see a module half loaded), so a run that goes on in threads (a
    fleet's) loads them first, in one thread."""
    while _WAITING:
        dir(_WAITING.pop())
