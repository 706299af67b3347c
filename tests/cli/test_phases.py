"""Deploy phases: the marker, the order of runs, the lint, and a real zero-downtime release."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from predeploy.migrate.discovery import discover
from support import phases_scenario as scenario
from support.cli import Cli
from support.cluster import free_port
from support.environ import OUR_VARIABLES
from support.project import write_migrations
from support.terminal import run_in_terminal

PRE_AND_POST = {
    "1_users": "CREATE TABLE users (id int PRIMARY KEY, name text, old text);",
    "2_drop_old": "-- predeploy: post-deploy\nALTER TABLE users DROP COLUMN old;",
    "3_add_email": "ALTER TABLE users ADD COLUMN email text;",
}


def test_the_marker_makes_a_migration_post_deploy(tmp_path: Path) -> None:
    """Only a first-line marker counts (any case, spaces); new --post-deploy writes it."""
    write_migrations(
        tmp_path,
        {
            "1_a": "-- predeploy: post-deploy\nSELECT 1;",
            "2_b": "--Predeploy:Post-Deploy  \r\nSELECT 1;",
            "3_c": "SELECT 1;\n-- predeploy: post-deploy",
        },
    )
    assert [(m.name, m.phase) for m in discover(tmp_path)] == [
        ("1_a", "post-deploy"),
        ("2_b", "post-deploy"),
        ("3_c", "pre-deploy"),
    ]


def test_runs_keep_name_order_across_phases(
    cli: Cli, database_url: str, migrations_dir: Path
) -> None:
    """Pre, post, pre pending: migrate applies the pre-deploy one before the post-deploy
    one and stops there (exit 5, the next commands named); --post-deploy then applies the
    post-deploy one, and migrate the last (each advice leads somewhere; they pointed at
    each other with nothing applied); status shows the phase."""
    write_migrations(migrations_dir, PRE_AND_POST)
    env = {"DATABASE_URL": database_url, "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir)}
    refused = cli("migrate", "--env", "staging", "--yes", "--post-deploy", env=env)
    assert refused.returncode == 5
    assert "post-deploy migration(s) 2_drop_old" in refused.stderr
    assert "nothing was applied" in refused.stderr
    pre = cli("migrate", "--env", "staging", "--yes", "--json", env=env)
    assert pre.returncode == 5, pre.stderr
    assert (
        "post-deploy migration 2_drop_old is pending before pre-deploy migration(s) 3_add_email"
        in pre.stderr
    )
    assert "applied 1_users and stopped there" in pre.stderr
    report = json.loads(pre.stdout)
    assert [a["name"] for a in report["applied"]] == ["1_users"]
    assert report["later"] == ["2_drop_old", "3_add_email"]
    assert report["runbook"][0] == "# this run applied 1 migration(s): 1_users"  # no failure
    with psycopg.connect(database_url) as conn:  # it did what it could: not "failed"
        rows = conn.execute("SELECT outcome FROM predeploy_runs ORDER BY id").fetchall()
    assert rows[-1] == ("applied: stopped before the post-deploy phase",), rows
    status = json.loads(cli("status", "--env", "staging", "--json", env=env).stdout)
    assert {m["name"]: m["phase"] for m in status["migrations"]} == {
        "1_users": "pre-deploy",
        "2_drop_old": "post-deploy",
        "3_add_email": "pre-deploy",
    }
    post = cli("migrate", "--env", "staging", "--yes", "--post-deploy", "--json", env=env)
    assert post.returncode == 0, post.stderr
    assert [a["name"] for a in json.loads(post.stdout)["applied"]] == ["2_drop_old"]
    assert cli("migrate", "--env", "staging", "--yes", env=env).returncode == 0
    assert cli("status", "--env", "staging", "--check", env=env).returncode == 0


def test_migrate_names_the_waiting_post_deploy_migration_with_the_line_that_applies_it(
    cli: Cli, database_url: str, migrations_dir: Path, project: Path
) -> None:
    """After migrate applies the pre-deploy migrations, the post-deploy one left waiting is
    named with the command that applies it; pasted in a terminal, that line applies it."""
    write_migrations(migrations_dir, {k: PRE_AND_POST[k] for k in ("1_users", "2_drop_old")})
    env = {"DATABASE_URL": database_url, "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir)}
    done = cli("migrate", "--env", "staging", "--yes", env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    waiting = (
        "1 migration(s) wait for the post-deploy phase, once the new release is live: "
        "2_drop_old; then apply them with:"
    )
    assert waiting in lines, done.stdout
    line = lines[lines.index(waiting) + 1].strip()
    assert shlex.split(line)[1:] == ["migrate", "--env", "staging", "--post-deploy"]
    assert "deploy --env staging" in lines[lines.index(waiting) + 2]
    environ = {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES} | env
    code, screen = run_in_terminal(
        ["/bin/sh", "-c", line], cwd=project, env=environ, answer="y", prompt=b"[y/N]"
    )
    assert code == 0, screen
    with psycopg.connect(database_url) as conn:
        names = conn.execute("SELECT migration_name FROM _prisma_migrations ORDER BY 1")
        assert [n for (n,) in names] == ["1_users", "2_drop_old"]


def test_lint_raises_breaking_changes_in_pre_deploy_only(
    cli: Cli, database_url: str, migrations_dir: Path
) -> None:
    """DROP COLUMN in a pre-deploy migration is a breaks-running-release warning; the same in
    a post-deploy one is fine (squawk's ban-drop-column lowered to info); a NOT NULL on a
    column the same migration adds is not breaking."""
    write_migrations(
        migrations_dir,
        {
            "1_pre": "ALTER TABLE t DROP COLUMN a;\n"
            "ALTER TABLE t ADD COLUMN n int; ALTER TABLE t ALTER COLUMN n SET NOT NULL;",
            "2_post": "-- predeploy: post-deploy\nALTER TABLE t DROP COLUMN b;",
        },
    )
    env = {"DATABASE_URL": database_url, "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir)}
    done = cli("lint", "--env", "staging", "--json", env=env)
    files = {f["migration"]: f for f in json.loads(done.stdout)["files"]}
    pre = [(f["rule"], f["severity"]) for f in files["1_pre"]["findings"]]
    assert ("breaks-running-release", "warning") in pre
    breaking = [f for f in files["1_pre"]["findings"] if f["rule"] == "breaks-running-release"]
    assert [f["message"].split(" in a ")[0] for f in breaking] == ["DROP COLUMN t.a"]
    post = [(f["rule"], f["severity"]) for f in files["2_post"]["findings"]]
    assert ("ban-drop-column", "info") in post
    assert all(rule != "breaks-running-release" for rule, _ in post)
    assert files["2_post"]["phase"] == "post-deploy"


@pytest.fixture(scope="session")
def node_pg(pm2_bin: Path) -> Path:
    """node-postgres installed beside pm2, for an app that reads the database."""
    folder = pm2_bin.parents[2]
    if not (folder / "node_modules" / "pg").is_dir():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "pg@8"],
            cwd=folder,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return folder / "node_modules"


@pytest.fixture
def db_app(
    project: Path,
    pm2_bin: Path,
    node_pg: Path,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, str], str]]:
    """The app of phases_scenario, at its first release, run by a real pm2 in cluster mode."""
    home = tmp_path_factory.mktemp("pm2home")
    with scenario.running_app(project, pm2_bin, node_pg, database_url, free_port(), home) as app:
        yield app


@pytest.mark.slow
@pytest.mark.parametrize(("release", "zero_failures"), [("two", True), ("one", False)])
def test_expand_contract_serves_every_request_one_phase_does_not(
    project: Path,
    db_app: tuple[dict[str, str], str],
    database_url: str,
    release: str,
    zero_failures: bool,
) -> None:
    """Renaming a column the app reads, deployed while requests run: in two phases (add b
    pre-deploy, drop a post-deploy) no request fails; as one pre-deploy rename, some do."""
    env, url = db_app
    scripts = scenario.TWO_PHASES if release == "two" else scenario.ONE_PHASE
    load = scenario.deploy_under_load(project, env, url, scripts)
    assert load.sent > 50
    if zero_failures:
        assert load.failed == 0, load.errors[:5]
    else:
        assert load.failed > 0
    with psycopg.connect(database_url) as conn:
        columns = {
            c
            for (c,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'items'"
            )
        }
    assert columns == {"id", "b"}
