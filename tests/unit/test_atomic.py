"""_util.atomic: a file is its old content or its new one; nothing is left beside it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from predeploy._util.atomic import write_json, write_text


@pytest.mark.parametrize(
    ("data", "indent", "text"),
    [
        ({"a": 1}, 2, '{\n  "a": 1\n}\n'),  # a manifest: indented, a final newline
        ({"a": [1, 2]}, None, '{"a":[1,2]}'),  # a cache entry: compact
        ([], 2, "[]\n"),
    ],
)
def test_write_json_shapes(tmp_path: Path, data: Any, indent: int | None, text: str) -> None:
    path = tmp_path / "x.json"
    write_json(path, data, indent=indent)
    assert path.read_text() == text
    assert json.loads(text) == data
    assert os.listdir(tmp_path) == ["x.json"]  # no partial left
    assert path.stat().st_mode & 0o777 == 0o600


def test_write_replaces_and_a_failure_keeps_the_old_content(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    write_text(path, "old")
    write_text(path, "new", sync=False)
    assert path.read_text() == "new"
    with pytest.raises(TypeError):
        write_json(path, {"not json": object()})  # fails before anything is written
    with pytest.raises(UnicodeEncodeError):
        write_text(path, "\udcff")  # fails while writing the partial
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["m.json"]


def test_an_explicit_partial_is_used_and_renamed(tmp_path: Path) -> None:
    partial = tmp_path / ".tmp-1.json"
    write_text(tmp_path / "c.json", "x", partial=partial)
    assert not partial.exists() and (tmp_path / "c.json").read_text() == "x"
