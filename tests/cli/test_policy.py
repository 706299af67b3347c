"""One policy per env decides every gate, tested as a table.

`prod` and `production` (Node's `.env.production`) are protected by default;
PREDEPLOY_PROTECTED=1 protects any env and =0 unprotects one explicitly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg
import pytest

from support.terminal import run_in_terminal
from support.wayback import Site, write


@pytest.fixture
def site(project: Path, database_url: str) -> Site:
    """A project with one pending migration; its database settings live in .env.production."""
    here = Site(project, database_url, {})
    write(here.migrations, "1_users", "CREATE TABLE users (id int PRIMARY KEY);")
    settings = here.env.pop("DATABASE_URL")
    (project / ".env.production").write_text(f"DATABASE_URL={settings}\n")
    return here


def tables(url: str) -> list[str]:
    """The tables in public, but the audit table (a refused run leaves its row there)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return sorted(name for (name,) in rows if name != "predeploy_runs")


def test_env_production_gets_prods_policy(site: Site, database_url: str) -> None:
    """.env.production: --no-backup refused (2), a typed name asked; --yes backs up first."""
    refused = site.run("migrate", "--env", "production", "--no-backup", "--yes")
    assert refused.returncode == 2, refused.stderr
    assert "--no-backup is refused in production (protected)" in refused.stderr
    assert tables(database_url) == []
    name = database_url.rsplit("/", 1)[1]
    code, screen = run_in_terminal(
        [sys.executable, "-m", "predeploy", "migrate", "--env", "production"],
        cwd=site.project,
        env={**os.environ, **site.env},
        answer="y",
        prompt=b"to go on:",
    )
    assert code == 8, screen
    assert f"Type '{name}' to go on" in screen
    assert tables(database_url) == []
    done = site.migrate("production")
    assert done["exit_code"] == 0, done["stderr"]
    assert done["backup"]["path"].startswith(str(site.backups / "production"))
    assert tables(database_url) == ["_prisma_migrations", "users"]


def test_protected_1_guards_staging_and_0_opens_prod(site: Site, database_url: str) -> None:
    """PREDEPLOY_PROTECTED=1 refuses --no-backup on staging; =0 lets prod apply without one."""
    site.env["DATABASE_URL"] = database_url
    refused = site.run(
        "migrate", "--env", "staging", "--no-backup", "--yes", PREDEPLOY_PROTECTED="1"
    )
    assert refused.returncode == 2, refused.stderr
    assert "refused in staging (protected)" in refused.stderr
    assert tables(database_url) == []
    opened = site.migrate("prod", "--no-backup", PREDEPLOY_PROTECTED="0")
    assert opened["exit_code"] == 0, opened["stderr"]
    assert opened["backup"] is None and not site.backups.exists()
    assert "users" in tables(database_url)
