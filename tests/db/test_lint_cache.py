"""The cache folder: squawk's findings kept per file and options, program versions kept
per program (path, size, mtime); the live table sizes never kept."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from predeploy._util import cache
from predeploy.db import embedded
from predeploy.migrate import discovery, lint
from predeploy.programs import pgbin
from support.project import write_migrations

RISKY = {
    "1_index": "CREATE INDEX events_at ON events (at);",
    "2_rename": "ALTER TABLE events RENAME COLUMN body TO text;",
}


def run_lint(
    folder: Path, cache_dir: Path, **options: Any
) -> tuple[lint.LintReport, dict[str, Any]]:
    """Lint every migration in ``folder``; the report and its lint_done event."""
    with capture_logs() as logs:
        report = lint.lint(
            discovery.discover(folder),
            options.pop("conn", None),
            large_rows=1000,
            cache_dir=cache_dir,
            **options,
        )
    (done,) = [e for e in logs if e["event"] == "lint_done"]
    return report, done


def mark_entries(cache_dir: Path) -> int:
    """Rewrite every kept finding's message, so that findings read from the cache show."""
    entries = list((cache_dir / "lint").glob("*.json"))
    for entry in entries:
        items = json.loads(entry.read_text())
        entry.write_text(json.dumps([item | {"message": "from the cache"} for item in items]))
    return len(entries)


def test_nothing_new_runs_no_squawk_and_an_edit_lints_that_file(tmp_path: Path) -> None:
    """A second lint takes every finding from the cache; an edited file alone is linted."""
    folder, cache_dir = tmp_path / "migrations", tmp_path / "cache"
    write_migrations(folder, RISKY)
    first, done = run_lint(folder, cache_dir)
    assert (done["linted"], done["squawk_runs"]) == (2, 1)
    rules = {(f.migration, f.rule) for f in first.findings}
    assert rules == {
        ("1_index", "require-concurrent-index-creation"),
        ("2_rename", "renaming-column"),
    }
    assert mark_entries(cache_dir) == 2

    second, done = run_lint(folder, cache_dir)
    assert (done["linted"], done["squawk_runs"]) == (0, 0)
    assert {(f.migration, f.rule) for f in second.findings} == rules
    assert {f.message for f in second.findings} == {"from the cache"}

    (folder / "2_rename" / "migration.sql").write_text("ALTER TABLE events RENAME body TO b;")
    third, done = run_lint(folder, cache_dir)
    assert (done["linted"], done["squawk_runs"]) == (1, 1)
    messages = {f.migration: f.message for f in third.findings}
    assert messages["1_index"] == "from the cache"
    assert messages["2_rename"] != "from the cache"


def test_what_changes_squawks_answer_is_part_of_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another server version, or a .squawk.toml squawk would read, lints again."""
    folder, cache_dir = tmp_path / "migrations", tmp_path / "cache"
    write_migrations(folder, RISKY)
    monkeypatch.chdir(tmp_path)
    run_lint(folder, cache_dir, server_version="15.4")
    assert run_lint(folder, cache_dir, server_version="15.4")[1]["linted"] == 0
    assert run_lint(folder, cache_dir, server_version="13.2")[1]["linted"] == 2
    (tmp_path / ".squawk.toml").write_text('excluded_paths = ["vendor/*.sql"]\n')
    assert run_lint(folder, cache_dir, server_version="15.4")[1]["linted"] == 2


def test_a_first_lint_of_a_thousand_files_runs_squawk_in_parallel(tmp_path: Path) -> None:
    """1,000 new files: squawk runs once per core (up to 10), each file gets its finding."""
    folder, cache_dir = tmp_path / "migrations", tmp_path / "cache"
    write_migrations(
        folder,
        {f"{i:04d}_m": f"ALTER TABLE events ADD COLUMN c{i} bigint NOT NULL;" for i in range(1000)},
    )
    report, done = run_lint(folder, cache_dir)
    assert done["linted"] == 1000
    assert done["squawk_runs"] == min(os.cpu_count() or 1, 10)
    per_file = {f.migration for f in report.findings if f.rule == "adding-required-field"}
    assert len(per_file) == 1000
    assert len(list((cache_dir / "lint").glob("*.json"))) == 1000
    assert run_lint(folder, cache_dir)[1]["squawk_runs"] == 0


def test_live_table_sizes_are_read_on_every_run(database_url: str, tmp_path: Path) -> None:
    """Kept findings still carry the table's size as it is now."""
    folder, cache_dir = tmp_path / "migrations", tmp_path / "cache"
    write_migrations(folder, {"1_index": RISKY["1_index"]})
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE events AS SELECT now() AS at FROM generate_series(1, 10)")
        conn.execute("ANALYZE events")
        first, _ = run_lint(folder, cache_dir, conn=conn)
        conn.execute("INSERT INTO events SELECT now() FROM generate_series(1, 2000)")
        conn.execute("ANALYZE events")
        second, done = run_lint(folder, cache_dir, conn=conn)
    assert done["linted"] == 0
    assert [(t.rows, f.raised) for f in first.findings for t in f.tables] == [(10, False)]
    assert [(t.rows, f.raised) for f in second.findings for t in f.tables] == [(2010, True)]


def test_program_versions_are_kept_by_path_size_and_time(tmp_path: Path) -> None:
    """pg_dump --version is asked once; a replaced program is asked again."""
    program = tmp_path / "bin" / "pg_dump"
    program.parent.mkdir()
    calls = tmp_path / "calls"

    def install(version: str) -> None:
        program.write_text(f'#!/bin/sh\necho x >> {calls}\necho "pg_dump (PostgreSQL) {version}"\n')
        program.chmod(0o755)

    install("15.4")
    cache_dir = tmp_path / "cache"
    assert pgbin.program_version(program, cache_dir) == (15, "15.4")
    assert pgbin.program_version(program, cache_dir) == (15, "15.4")
    assert calls.read_text().count("x") == 1
    install("16.10")
    assert pgbin.program_version(program, cache_dir) == (16, "16.10")
    assert calls.read_text().count("x") == 2
    assert str(program) in json.loads((cache_dir / "programs.json").read_text())


def test_without_a_project_the_users_cache_folder_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pgbin's probes go to $XDG_CACHE_HOME/predeploy when no folder is given."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.folder(None) == tmp_path / "xdg" / "predeploy"
    assert cache.folder(tmp_path) == tmp_path / ".predeploy" / "cache"
    found = pgbin.find_candidates("pg_dump", None, embedded.bin_dir())
    kept = json.loads((tmp_path / "xdg" / "predeploy" / "programs.json").read_text())
    assert str(embedded.bin_dir() / "pg_dump") in kept
    assert {str(p.path) for p in found} <= set(kept)


def test_a_corrupt_or_unwritable_cache_is_only_slower(tmp_path: Path) -> None:
    """A garbled entry is a miss; a cache folder that cannot be made changes nothing."""
    folder, cache_dir = tmp_path / "migrations", tmp_path / "cache"
    write_migrations(folder, RISKY)
    first, _ = run_lint(folder, cache_dir)
    for entry in (cache_dir / "lint").glob("*.json"):
        entry.write_text("{not json")
    second, done = run_lint(folder, cache_dir)
    assert done["linted"] == 2
    assert [f.rule for f in second.findings] == [f.rule for f in first.findings]
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    third, done = run_lint(folder, blocked)
    assert done["linted"] == 2 and len(third.findings) == len(first.findings)
