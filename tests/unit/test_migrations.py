"""Discovery of migrations on disk, and `invoke new` (pure: no database)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from predeploy.errors import ConfigError
from predeploy.migrate.discovery import create, discover
from support.project import write_migrations


def test_order_is_bytewise_and_identity_is_the_folder_name(migrations_dir: Path) -> None:
    """Folders sort by their bytes; odd real-world names are kept whole."""
    names = [
        "20230101000000_b",
        "20230101000000_a",
        "2023010_short",
        "20230102 with space",
        "20230103_x.sql",
        "Z_upper",
    ]
    write_migrations(migrations_dir, dict.fromkeys(names, "SELECT 1;"))
    assert [m.name for m in discover(migrations_dir)] == sorted(names, key=str.encode)


def test_checksum_is_sha256_of_the_bytes(migrations_dir: Path) -> None:
    """The checksum is Prisma's: SHA-256 hex of migration.sql's bytes."""
    data = b"CREATE TABLE t (id int);\r\n"
    write_migrations(migrations_dir, {"1_a": data})
    (migration,) = discover(migrations_dir)
    assert migration.checksum == hashlib.sha256(data).hexdigest()


def test_line_ending_churn_still_matches(migrations_dir: Path) -> None:
    """A file whose CRLF became LF (or back) matches its recorded checksum; an edit does not."""
    lf = b"CREATE TABLE t (id int);\nSELECT 1;\n"
    write_migrations(migrations_dir, {"1_a": lf.replace(b"\n", b"\r\n")})
    (migration,) = discover(migrations_dir)
    assert migration.matches(hashlib.sha256(lf).hexdigest())
    assert not migration.matches(hashlib.sha256(lf + b"-- edited\n").hexdigest())


def test_folder_without_migration_sql_is_named(migrations_dir: Path) -> None:
    """A folder with no migration.sql is an error naming it, before anything runs."""
    write_migrations(migrations_dir, {"1_ok": "SELECT 1;"})
    (migrations_dir / "2_empty").mkdir()
    with pytest.raises(ConfigError, match=r"without migration.sql.*2_empty"):
        discover(migrations_dir)


def test_lock_file_for_another_provider_is_refused(migrations_dir: Path) -> None:
    """migration_lock.toml must say postgresql."""
    (migrations_dir / "migration_lock.toml").write_text('provider = "mysql"\n')
    with pytest.raises(ConfigError, match="provider = 'mysql'"):
        discover(migrations_dir)
    (migrations_dir / "migration_lock.toml").write_text('provider = "postgresql"\n')
    assert discover(migrations_dir) == []


def test_missing_folder_says_how_to_start(tmp_path: Path) -> None:
    """No migrations folder: say so and how to make one."""
    with pytest.raises(ConfigError, match=r"does not exist.*predeploy new NAME"):
        discover(tmp_path / "nope")


def test_new_creates_timestamped_folder_with_both_files(migrations_dir: Path) -> None:
    """`new` makes <UTC %Y%m%d%H%M%S>_<name>/ with migration.sql and down.sql."""
    migration = create(migrations_dir, "add_avatar", datetime(2026, 11, 24, 9, 5, 7, tzinfo=UTC))
    assert migration.name == "20261124090507_add_avatar"
    assert migration.sql_path.is_file()
    assert migration.down_path is not None
    assert [m.name for m in discover(migrations_dir)] == ["20261124090507_add_avatar"]


@pytest.mark.parametrize("name", ["Add Avatar", "../evil", "", "_x", "a-b"])
def test_new_refuses_bad_names(migrations_dir: Path, name: str) -> None:
    """Names are snake_case: nothing that could escape the folder or confuse ordering."""
    with pytest.raises(ConfigError, match="must be lowercase letters"):
        create(migrations_dir, name)


def test_new_refuses_an_existing_folder(migrations_dir: Path) -> None:
    """Two migrations of one name in one second: the second is refused."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    create(migrations_dir, "x", when)
    with pytest.raises(ConfigError, match="already exists"):
        create(migrations_dir, "x", when)
