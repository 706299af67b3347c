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

__all__ = ["module"]


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
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, lazy)
    return lazy
