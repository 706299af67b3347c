"""Modules imported on first use: each command pays only for the modules it runs.

    if TYPE_CHECKING:
        from predeploy.commands import migrate as workflow
    else:
        workflow = lazy.module("predeploy.commands.migrate")

The module's code runs the first time one of its attributes is read; type checkers see the
ordinary import. `predeploy status` never needs the backup, deploy or lint machinery, and
so never imports it.

The first use is one thread's, and the others wait for it: a fleet run's workers reach the
same lazy module at once. (importlib's LazyLoader, used here before, marks the module loaded
before running its code, so up to Python 3.12.2 a second thread read it half executed: an
AttributeError for a name defined further down, failing every target but the first.)
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

__all__ = ["module"]

_LOCKS: dict[str, threading.RLock] = {}  # one per lazy module: who runs its code first
_LOADING: set[str] = set()  # modules whose code runs now (their own thread may read them)


class _Deferred(ModuleType):
    """A module whose code has not run yet: the first attribute read runs it, under its
    lock; threads that read it meanwhile wait for the code to have run."""

    def __getattribute__(self, attr: str) -> Any:
        read = ModuleType.__getattribute__
        name = read(self, "__name__")
        with _LOCKS[name]:
            if type(self) is _Deferred and name not in _LOADING:
                _LOADING.add(name)
                try:
                    read(self, "__spec__").loader.exec_module(self)
                    object.__setattr__(self, "__class__", ModuleType)
                finally:
                    _LOADING.discard(name)
        return read(self, attr)


def module(name: str) -> ModuleType:
    """The module ``name``, to be executed when first used (at once if already imported)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}", name=name)
    lazy = importlib.util.module_from_spec(spec)
    _LOCKS[name] = threading.RLock()
    lazy.__class__ = _Deferred
    sys.modules[name] = lazy
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, lazy)
    return lazy
