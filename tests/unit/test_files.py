"""_util.files: a file's content, or one ConfigError line naming it, why, and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from predeploy._util.files import read_bytes, read_text
from predeploy.errors import ConfigError


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (b"A=1\n", "A=1\n"),
        (b"\xef\xbb\xbfA=1\n", "A=1\n"),  # a byte-order mark is dropped
        (b"", ""),
    ],
)
def test_read_text(tmp_path: Path, content: bytes, text: str) -> None:
    path = tmp_path / "f"
    path.write_bytes(content)
    assert read_text(path) == text
    assert read_bytes(path) == content


@pytest.mark.parametrize(
    ("make", "shown", "advice", "expected"),
    [
        (lambda t: t / "missing", None, "", "cannot read {t}/missing: No such file or directory"),
        (
            lambda t: t,
            ".env",
            ": fix or remove it",
            "cannot read .env: Is a directory: fix or remove it",
        ),
        (
            lambda t: (t / "bin").write_bytes(b"ok\xff") and t / "bin",
            "package.json",
            ": fix it",
            "cannot read package.json: not UTF-8 text (byte 0xff at offset 2): fix it",
        ),
    ],
)
def test_one_line_saying_what_and_why(
    tmp_path: Path, make: object, shown: str | None, advice: str, expected: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(ConfigError) as caught:
        read_text(path, shown=shown, advice=advice)
    assert str(caught.value) == expected.format(t=tmp_path)
    assert caught.value.exit_code == 2
