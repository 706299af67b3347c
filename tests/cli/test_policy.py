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

from predeploy.config.policy import policy_for
from predeploy.config.settings import load_settings
from predeploy.errors import ConfigError
from support.terminal import run_in_terminal
from support.wayback import Site, write

# (protected, confirmation, backup required, --no-backup allowed, lint errors block,
#  edited migrations block, blockers, rehearse behind the confirmation)
DEVELOPMENT = (False, "none", False, True, False, False, "list", False)
ORDINARY = (False, "yes", True, True, False, True, "list", False)
PROTECTED = (True, "typed", True, False, True, True, "ask", True)


@pytest.mark.parametrize(
    ("env", "setting", "expected"),
    [
        ("dev", None, DEVELOPMENT),
        ("development", None, DEVELOPMENT),
        ("staging", None, ORDINARY),
        ("qa", None, ORDINARY),
        ("prod", None, PROTECTED),
        ("production", None, PROTECTED),
        ("staging", "1", PROTECTED),
        ("qa", "yes", PROTECTED),
        ("dev", "1", PROTECTED),
        ("prod", "0", ORDINARY),
        ("production", "false", ORDINARY),
        ("development", "0", DEVELOPMENT),
    ],
)
def test_policy_of_each_env(
    tmp_path: Path, env: str, setting: str | None, expected: tuple[object, ...]
) -> None:
    """Each env's gates, from its name and PREDEPLOY_PROTECTED."""
    for name in ("qa", "production", "development"):
        (tmp_path / f".env.{name}").write_text("")
    environ = {"DATABASE_URL": "postgresql://app@localhost/app"}
    if setting is not None:
        environ["PREDEPLOY_PROTECTED"] = setting
    policy = policy_for(load_settings(env, tmp_path, environ))
    assert (
        policy.protected,
        policy.confirmation,
        policy.backup_required,
        policy.no_backup_allowed,
        policy.lint_errors_block,
        policy.edited_blocks,
        policy.blockers,
        policy.rehearse_confirmed,
    ) == expected
    assert policy.drift_checked is policy.protected
    assert policy.label == (f"{env} (protected)" if policy.protected else env)


def test_allow_no_backup_opens_only_that_gate(tmp_path: Path) -> None:
    """PREDEPLOY_ALLOW_NO_BACKUP=1 in prod allows --no-backup and changes nothing else."""
    environ = {"DATABASE_URL": "postgresql://app@localhost/app", "PREDEPLOY_ALLOW_NO_BACKUP": "1"}
    policy = policy_for(load_settings("prod", tmp_path, environ))
    assert policy.no_backup_allowed and policy.protected and policy.confirmation == "typed"


def test_a_bad_protected_value_is_a_configuration_error(tmp_path: Path) -> None:
    """PREDEPLOY_PROTECTED=maybe: exit 2 naming the variable."""
    environ = {"DATABASE_URL": "postgresql://app@localhost/app", "PREDEPLOY_PROTECTED": "maybe"}
    with pytest.raises(ConfigError, match="PREDEPLOY_PROTECTED='maybe'") as refused:
        load_settings("staging", tmp_path, environ)
    assert refused.value.exit_code == 2


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
