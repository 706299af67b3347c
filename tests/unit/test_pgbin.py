"""Choosing pg_dump/pg_restore for a server's major version."""

from __future__ import annotations

from pathlib import Path

from predeploy.db import embedded
from predeploy.programs import pgbin


def program(major: int, source: str = "system") -> pgbin.PgProgram:
    return pgbin.PgProgram(
        path=Path(f"/pg{major}/pg_dump"), major=major, version=f"{major}.1", source=source
    )


def test_same_major_wins_in_preference_order() -> None:
    """The first candidate of the server's major version is chosen."""
    first, second = program(15, "PREDEPLOY_PG_BIN_DIR"), program(15, "system")
    choice = pgbin.choose(15, [program(18, "embedded"), first, second], [second])
    assert choice.pg_dump is first
    assert choice.warning is None
    assert choice.usable


def test_newer_is_used_with_a_warning() -> None:
    """With no same-major pg_dump, the newest is used and that is said."""
    choice = pgbin.choose(14, [program(15), program(18, "embedded")], [])
    assert choice.pg_dump is not None and choice.pg_dump.major == 18
    assert choice.warning is not None and "no pg_dump 14 found" in choice.warning
    assert choice.usable


def test_only_older_is_reported_as_unusable() -> None:
    """An older pg_dump refuses the server: say so."""
    choice = pgbin.choose(18, [program(15)], [])
    assert not choice.usable
    assert (
        choice.warning is not None
        and "only pg_dump 15 found, older than the server (18)" in choice.warning
    )


def test_none_found() -> None:
    """No pg_dump at all is reported."""
    choice = pgbin.choose(15, [], [])
    assert choice.pg_dump is None and not choice.usable
    assert choice.warning is not None and "no pg_dump found" in choice.warning


def test_candidates_come_from_pg_bin_dir_first_and_really_run() -> None:
    """PREDEPLOY_PG_BIN_DIR's programs come first; versions are read from the programs."""
    bin_dir = embedded.bin_dir()
    found = pgbin.find_candidates("pg_dump", bin_dir, bin_dir)
    assert found[0].path == bin_dir / "pg_dump"
    assert found[0].source == "PREDEPLOY_PG_BIN_DIR"
    assert found[0].major >= 15
    assert [p.path for p in found].count(bin_dir / "pg_dump") == 1


def test_a_folder_without_programs_gives_nothing(tmp_path: Path) -> None:
    """A PREDEPLOY_PG_BIN_DIR without pg_dump contributes no candidate."""
    found = pgbin.find_candidates("pg_dump", tmp_path, None)
    assert all(p.path.parent != tmp_path for p in found)
