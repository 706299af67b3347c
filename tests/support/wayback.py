"""Helpers of the way-back tests (restore, rollback, runbooks): state, project, pastes.

The judge of a way back is the state it brings back: the schema as `pg_dump --schema-only`
prints it (without comments and psql meta-commands, which carry random keys) and the
contents of every table and sequence. The audit table is left out: it records the runs
themselves and survives a restore on purpose.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from predeploy.config.settings import Settings, load_settings
from support.project import schema_dump

AUDIT = "predeploy_runs"
HISTORY = "_prisma_migrations"
_RELATIONS = """
SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
  AND c.relname NOT LIKE 'predeploy\\_runs%'
ORDER BY 1, 2
"""


def schema(url: str) -> list[str]:
    """The schema as pg_dump prints it, without noise and without the audit table."""
    dump = schema_dump(url, f"*.{AUDIT}*")
    return [line for line in dump.splitlines() if line and not line.startswith(("--", "\\"))]


def contents(url: str, *, without: tuple[str, ...] = ()) -> dict[str, str]:
    """Every table's rows (an md5 of them) and every sequence's position, by name."""
    found: dict[str, str] = {}
    with psycopg.connect(url) as conn:
        for nsp, name, kind in conn.execute(_RELATIONS).fetchall():
            if name in without:
                continue
            ident = sql.Identifier(nsp, name)
            query = (
                sql.SQL("SELECT last_value::text || ':' || is_called::text FROM {}")
                if kind == "S"
                else sql.SQL(
                    "SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM {} x"
                )
            )
            row = conn.execute(query.format(ident)).fetchone()
            found[f"{nsp}.{name}"] = str(row[0] if row else None)
    return found


def state(url: str, *, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """The schema and the contents: what a way back must bring back exactly."""
    return {"schema": schema(url), "contents": contents(url, without=without)}


def run(
    project: Path, env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`predeploy ARGS` in ``project`` as cron or CI runs it: no terminal (not even a
    controlling one), no stdin."""
    return subprocess.run(
        [sys.executable, "-m", "predeploy", *args],
        cwd=project,
        env={**_clean_environ(), **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        start_new_session=True,
    )


def paste(project: Path, env: dict[str, str], line: str) -> subprocess.CompletedProcess[str]:
    """A runbook line run exactly as printed (shell words), as an operator pastes it."""
    words = shlex.split(line)
    assert words[0] == "predeploy", line
    return run(project, env, *words[1:])


def commands(runbook: list[str]) -> list[str]:
    """The lines of a runbook that are commands (the others are # comments)."""
    return [line for line in runbook if line and not line.startswith("#")]


def report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON report a run printed on stdout."""
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def write(folder: Path, name: str, up: str, down: str | None = None) -> None:
    """A migration folder: migration.sql and (when given) down.sql."""
    (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / name / "migration.sql").write_text(up + "\n")
    if down is not None:
        (folder / name / "down.sql").write_text(down + "\n")


def execute(url: str, *statements: str | sql.Composable) -> None:
    """Run ``statements`` on ``url`` as the superuser, each committed."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _clean_environ() -> dict[str, str]:
    from support.environ import OUR_VARIABLES  # noqa: PLC0415

    return {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES}


class Site:
    """A project on one server: its folder, its migrations, the env a user would export."""

    def __init__(self, project: Path, url: str, extra: dict[str, str]) -> None:
        self.project, self.url = project, url
        self.migrations = project / "migrations"
        self.migrations.mkdir(exist_ok=True)
        self.backups = project / "backups"
        self.env = {
            "DATABASE_URL": url,
            "PREDEPLOY_MIGRATIONS_DIR": str(self.migrations),
            "PREDEPLOY_BACKUP_DIR": str(self.backups),
            "PREDEPLOY_LOG_DIR": str(project / "logs"),
            **extra,
        }

    def settings(self, env: str = "staging", **values: str) -> Settings:
        """The settings of ``env`` as a run in the project would read them."""
        return load_settings(env, self.project, {**self.env, **values})

    def run(self, *args: str, **values: str) -> subprocess.CompletedProcess[str]:
        """`predeploy ARGS` in the project, with ``values`` added to the environment."""
        return run(self.project, {**self.env, **values}, *args)

    def paste(self, line: str, **values: str) -> subprocess.CompletedProcess[str]:
        """A runbook line, pasted as printed."""
        return paste(self.project, {**self.env, **values}, line)

    def migrate(self, env: str = "staging", *flags: str, **values: str) -> dict[str, Any]:
        """`predeploy migrate --env ENV --yes --json FLAGS`: its report, with its exit code."""
        done = self.run("migrate", "--env", env, "--yes", "--json", *flags, **values)
        found = report(done) if done.stdout.strip() else {"exit_code": done.returncode}
        found["stderr"] = done.stderr
        assert found["exit_code"] == done.returncode, done.stderr
        return found
