"""discovery: a migration file is analysed once per process, by its checksum (a fleet run
discovers the same folder for every target)."""

from __future__ import annotations

from pathlib import Path

from predeploy.migrate import discovery


def _folder(root: Path, text: str) -> Path:
    folder = root / "migrations" / "20261207000000_init"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text(text)
    return root / "migrations"


def test_the_same_file_in_two_discoveries_is_analysed_once(tmp_path: Path) -> None:
    """Two targets' discoveries of equal files share one analysis; an edited file gets its own."""
    text = "CREATE TABLE shared_a (id int);\nCREATE INDEX shared_a_id ON shared_a (id);\n"
    (first,) = discovery.discover(_folder(tmp_path / "one", text))
    (second,) = discovery.discover(_folder(tmp_path / "two", text))
    assert first is not second
    assert first.parsed is second.parsed
    assert len(first.parsed.statements) == 2
    (edited,) = discovery.discover(_folder(tmp_path / "three", text + "DROP TABLE shared_a;\n"))
    assert edited.parsed is not first.parsed
    assert len(edited.parsed.statements) == 3
