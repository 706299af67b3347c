"""_util.lazy: a lazy module read by several threads at once (a fleet run's workers) is
run once, and every thread sees it whole."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import pytest

from predeploy._util import lazy

_BODY = """import sys
hook = sys.modules[__name__ + "_hook"]
hook.runs.append(1)
hook.entered.set()
hook.gate.wait(10)
value = 42
"""


def test_a_second_thread_waits_for_the_module_a_first_one_is_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thread A's first read runs the module, which stops half way; thread B reads it then:
    B gets the whole module once A's run ends (not an AttributeError), and it ran once."""
    name = "predeploy_lazy_probe"
    (tmp_path / f"{name}.py").write_text(_BODY)
    monkeypatch.syspath_prepend(str(tmp_path))
    hook = types.SimpleNamespace(runs=[], entered=threading.Event(), gate=threading.Event())
    monkeypatch.setitem(sys.modules, f"{name}_hook", hook)
    monkeypatch.delitem(sys.modules, name, raising=False)
    probe = lazy.module(name)
    monkeypatch.setitem(sys.modules, name, probe)
    assert hook.runs == []  # nothing ran before the first read
    seen: dict[str, object] = {}

    def read(who: str) -> None:
        try:
            seen[who] = probe.value
        except AttributeError as exc:
            seen[who] = exc

    first = threading.Thread(target=read, args=("a",))
    first.start()
    assert hook.entered.wait(10)  # A is inside the module's code, before `value`
    second = threading.Thread(target=read, args=("b",))
    second.start()
    hook.gate.set()
    first.join(10)
    second.join(10)
    assert seen == {"a": 42, "b": 42}
    assert hook.runs == [1]
