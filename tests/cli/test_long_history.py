"""A long history on its first production run: a question that fits one screen, a short
report, a summary `status`, and the migration being applied shown on a terminal only."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import psycopg
import pytest

from support.cli import Cli
from support.project import write_migrations
from support.terminal import run_in_terminal

ROWS = 5000
COUNT = 150


def _history(count: int, start: int = 0) -> dict[str, str]:
    """Migrations that each add a column and a plain index to the live table `events`: a
    lint warning on an existing table each, and an info finding for the int column."""
    return {
        f"{i + 2:04}_events_c{i}": f"ALTER TABLE events ADD COLUMN c{i} int;\n"
        f"CREATE INDEX events_c{i} ON events (c{i});\n"
        for i in range(start, start + count)
    }


@pytest.fixture
def long_history(project: Path, database_url: str, cli: Cli) -> dict[str, str]:
    """`events` with rows, applied; then 150 pending migrations on it."""
    env = {
        "DATABASE_URL": database_url,
        "PREDEPLOY_BACKUP_DIR": str(project / "backups"),
        "NO_COLOR": "1",
    }
    first = "CREATE TABLE events (id bigint PRIMARY KEY);"
    write_migrations(project / "migrations", {"0001_events": first})
    assert cli("migrate", "--env", "staging", "--yes", env=env).returncode == 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO events SELECT generate_series(1, %s)", (ROWS,))
        conn.execute("ANALYZE events")
    write_migrations(project / "migrations", _history(COUNT))
    return env


def applied_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        done = "SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL"
        (count,) = conn.execute(done).fetchall()[0]
        return int(count)


@pytest.mark.slow
def test_first_prod_run_of_a_long_history_fits_a_screen(
    project: Path, database_url: str, long_history: dict[str, str]
) -> None:
    """150 pending with a lint warning each, on a terminal: the typed question comes within
    15 lines of the start and is at most 40 lines, with the counts and the largest tables;
    typing the name applies them all, the report after is short, and the migration being
    applied was shown (one rewritten line)."""
    name = database_url.rsplit("/", 1)[1]
    code, screen = run_in_terminal(
        [sys.executable, "-m", "predeploy", "migrate", "--env", "prod"],
        cwd=project,
        env={**os.environ, **long_history},
        answer=name,
        prompt=b"to go on: ",
        timeout=240,
    )
    assert code == 0, screen
    lines = screen.split("\n")
    asked = next(i for i, line in enumerate(lines) if "About to apply" in line)
    typed = next(i for i, line in enumerate(lines) if "to go on:" in line)
    assert asked < 15, screen
    question = "\n".join(lines[asked : typed + 1])
    assert typed - asked < 40, question
    assert f"About to apply {COUNT} migration(s) on {name} on 127.0.0.1:" in question
    assert "(prod (protected)):" in question
    assert f"… {COUNT - 6} more (every one: predeploy status --env prod --all)" in question
    assert re.search(r"Lint \(\d+ finding\(s\): 0 error\(s\), 150 warning\(s\), \d+ info", question)
    assert "150 warning(s) on existing tables, largest first:" in question
    assert f"public.events ~{ROWS:,} rows" in question
    assert "every finding: predeploy lint --env prod" in question
    assert applied_count(database_url) == COUNT + 1
    after = lines[typed + 1 :]
    assert len(after) < 40, "\n".join(after)
    assert f"applied {COUNT} migration(s) in" in screen
    assert "\r\x1b[Kapplying 0002_events_c0… (1/150)\r" in screen
    assert "applying 0151_events_c149… (150/150)" in screen


@pytest.mark.slow
def test_status_summarises_a_long_history_and_all_lists_it(
    cli: Cli, project: Path, database_url: str, long_history: dict[str, str]
) -> None:
    """`status` on 151 migrations: the counts, the latest applied and the pending names
    (10, then how many more); `--all` a line each; `--json` every one. A captured migrate
    shows no 'applying' line and no control characters."""
    env = long_history
    shown = cli("status", "--env", "staging", env=env)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "151 migration(s): 1 applied, 150 pending" in text
    assert "latest applied: 0001_events" in text
    assert "pending (150):" in text
    assert "  … and 140 more (predeploy status --env staging --all)" in text
    assert "0151_events_c149" not in text
    assert len(text.splitlines()) < 25, text
    every = cli("status", "--env", "staging", "--all", env=env).stdout
    assert all(n in every for n in _history(COUNT)), every
    data = json.loads(cli("status", "--env", "staging", "--json", env=env).stdout)
    assert len(data["migrations"]) == COUNT + 1
    done = cli("migrate", "--env", "staging", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert "applying" not in done.stdout + done.stderr
    assert "\x1b[K" not in done.stdout + done.stderr
    assert f"applied {COUNT} migration(s) in" in done.stdout
    assert len(done.stdout.splitlines()) < 40, done.stdout
