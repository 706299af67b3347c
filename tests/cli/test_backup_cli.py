"""backup, backups and restore as a user types them: exit codes, JSON, the terminal's question."""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

import psycopg
import pytest

from predeploy.backup import dump as backup
from predeploy.config.settings import load_settings
from predeploy.db import target as db_target
from support.cli import Cli
from support.filling import grow
from support.terminal import run_in_terminal


def test_file_size_limit_leaves_nothing(
    cli: Cli, filled: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """RLIMIT_FSIZE reached mid-dump (SIGXFSZ): exit 4, one line, nothing left."""
    folder = tmp_path / "b"
    grow(filled, 20_000)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    env = {
        "DATABASE_URL": filled,
        "PREDEPLOY_BACKUP_DIR": str(folder),
        "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir),
    }
    done = cli("backup", "--env", "staging", env=env, preexec=limit)
    assert done.returncode == 4, done.stderr
    assert "File too large; no backup was kept" in done.stderr
    assert [p for p in (folder / "staging").iterdir()] == []


def test_cli_backup_backups_and_restore(
    cli: Cli, filled: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """From the command line: backup, list, restore refused without a terminal, then --yes."""
    env = {
        "DATABASE_URL": filled,
        "PREDEPLOY_BACKUP_DIR": str(tmp_path / "b"),
        "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir),
    }
    made = cli("backup", "--env", "staging", "--reason", "pre-migrate", "--json", env=env)
    assert made.returncode == 0, made.stderr
    path = json.loads(made.stdout)["path"]
    assert path.endswith("_pre-migrate.dump")
    listed = json.loads(cli("backups", "--env", "staging", "--json", env=env).stdout)["backups"]
    assert [(b["path"], b["verified"], b["latest_migration"]) for b in listed] == [
        (path, True, "1_base")
    ]
    with psycopg.connect(filled) as conn:
        conn.execute("TRUNCATE items CASCADE")
    refused = cli("restore", "--env", "staging", env=env)
    assert refused.returncode == 8
    assert "no terminal" in refused.stderr
    with psycopg.connect(filled) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (0,)
    restored = cli("restore", "--env", "staging", "--yes", "--json", env=env)
    assert restored.returncode == 0, restored.stderr
    with psycopg.connect(filled) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (2000,)
    bad = cli("backup", "--env", "staging", "--reason", "Bad Reason", env=env)
    assert bad.returncode == 2


@pytest.mark.parametrize(("typed", "expected"), [("right", 0), ("wrong", 8)])
def test_restore_asks_for_the_database_name_on_a_terminal(
    project: Path, filled: str, migrations_dir: Path, tmp_path: Path, typed: str, expected: int
) -> None:
    """On a real terminal: the right name restores; a wrong one is exit 8, nothing touched."""
    env = {
        **os.environ,
        "DATABASE_URL": filled,
        "PREDEPLOY_BACKUP_DIR": str(tmp_path / "b"),
        "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir),
    }
    settings = load_settings("staging", project, env)
    backup.backup(db_target.of(settings), settings.backup)
    with psycopg.connect(filled) as conn:
        conn.execute("TRUNCATE items CASCADE")
    name = filled.rsplit("/", 1)[1]
    code, screen = run_in_terminal(
        [sys.executable, "-m", "predeploy", "restore", "--env", "staging"],
        cwd=project,
        env=env,
        answer=name if typed == "right" else "not-it",
        prompt=b"to go on:",
    )
    assert code == expected, screen
    assert f"This replaces database {name}" in screen
    with psycopg.connect(filled) as conn:
        count = conn.execute("SELECT count(*) FROM items").fetchone()
    assert count == ((2000,) if typed == "right" else (0,))
    if typed == "wrong":
        assert "not confirmed" in screen
