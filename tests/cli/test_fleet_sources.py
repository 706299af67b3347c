"""Where a fleet's targets come from ([[targets]], [fleet] query, [fleet] command), how a
run is narrowed (--only, --group), one target on its own (--target), and the protected
env's one confirmation."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import Cli
from support.fleets import Fleet, fleet_of, outcomes
from support.servers import Server

SCRIPTS = {"1_a": "CREATE TABLE a (id int);", "2_b": "CREATE TABLE b (id int);"}
DOWN = {"1_a": "DROP TABLE a;", "2_b": "DROP TABLE b;"}


@pytest.fixture
def fleet(pg_server: Server, project: Path) -> Iterator[Fleet]:
    with fleet_of(pg_server, project, "t1", "t2", "t3") as made:
        made.migrations(SCRIPTS)
        for name, script in DOWN.items():
            (project / "migrations" / name / "down.sql").write_text(script)
        yield made


def fleet_run(cli: Cli, fleet: Fleet, *args: str) -> tuple[int, dict[str, str]]:
    done = cli(*args, "--env", "staging", "--json", env=fleet.env)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, outcomes(done)


def test_query_source(cli: Cli, fleet: Fleet) -> None:
    """[fleet] query on the env's database: one target per row, in the groups' order."""
    rows = ", ".join(f"('{n}', '{d}', '{'canary' if n == 't1' else 'rest'}')"
                     for n, d in fleet.tenants.items())  # fmt: skip
    fleet.sql(fleet.control, f"CREATE TABLE tenants (name text, database text, grp text); "
              f"INSERT INTO tenants VALUES {rows}")  # fmt: skip
    fleet.toml(
        'groups = ["canary", "rest"]\n'
        'query = "SELECT name, database, NULL::text AS schema, grp FROM tenants"'
    )
    code, found = fleet_run(cli, fleet, "migrate", "--fleet", "--yes")
    assert code == 0
    assert found == {"t1": "applied", "t2": "applied", "t3": "applied"}
    for database in fleet.tenants.values():
        assert fleet.applied(database) == ["1_a", "2_b"]
    code, found = fleet_run(cli, fleet, "status", "--fleet", "--check")
    assert code == 0 and set(found.values()) == {"up to date"}


def test_command_source_only_and_group(cli: Cli, fleet: Fleet) -> None:
    """[fleet] command prints JSON; --only and --group narrow the run to what they name."""
    listed = [{"name": n, "database": d, "grp": "canary" if n == "t1" else "rest"}
              for n, d in fleet.tenants.items()]  # fmt: skip
    script = fleet.project / "targets.sh"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(listed)}\nEOF\n")
    script.chmod(0o755)
    fleet.toml('groups = ["canary", "rest"]\ncommand = "./targets.sh"')
    code, found = fleet_run(cli, fleet, "migrate", "--fleet", "--yes", "--only", "t2")
    assert code == 0 and found == {"t2": "applied"}
    assert fleet.applied(fleet.tenants["t1"]) == []
    code, found = fleet_run(cli, fleet, "status", "--fleet", "--check")
    assert code == 1
    assert found == {"t1": "behind", "t2": "up to date", "t3": "behind"}
    code, found = fleet_run(cli, fleet, "migrate", "--fleet", "--yes", "--group", "rest")
    assert code == 0 and found == {"t2": "up to date", "t3": "applied"}
    assert fleet.applied(fleet.tenants["t1"]) == []
    unknown = cli("migrate", "--env", "staging", "--fleet", "--only", "nope", env=fleet.env)
    assert unknown.returncode == 2 and "nope" in unknown.stderr


def test_target_on_status_migrate_and_the_runbooks_rollback(cli: Cli, fleet: Fleet) -> None:
    """--target NAME acts on one target as a single run; the fleet runbook's rollback line
    for t1, pasted as printed, undoes exactly t1's migrations."""
    fleet.databases_toml("concurrency = 2")
    done = cli("migrate", "--env", "staging", "--target", "t2", "--yes", env=fleet.env)
    assert done.returncode == 0, done.stderr
    assert fleet.applied(fleet.tenants["t2"]) == ["1_a", "2_b"]
    assert fleet.applied(fleet.tenants["t1"]) == []
    status = cli("status", "--env", "staging", "--target", "t1", "--json", env=fleet.env)
    assert json.loads(status.stdout)["counts"]["pending"] == 2
    migrated = cli("migrate", "--env", "staging", "--fleet", "--yes", "--json", env=fleet.env)
    assert migrated.returncode == 0, migrated.stderr
    runbook = Path(json.loads(migrated.stdout)["runbook_path"]).read_text().splitlines()
    (line,) = [w for w in runbook if w.startswith("predeploy rollback") and "t1" in w]
    words = shlex.split(line)
    assert words[words.index("--target") + 1] == "t1"
    undone = cli(*words[1:], env=fleet.env)
    assert undone.returncode == 0, undone.stderr
    assert fleet.applied(fleet.tenants["t1"]) == []
    assert fleet.applied(fleet.tenants["t3"]) == ["1_a", "2_b"]


def test_protected_env_without_yes_or_terminal_is_refused_first(cli: Cli, fleet: Fleet) -> None:
    """prod, no --yes, no terminal: refused (8) before any target is touched."""
    fleet.databases_toml("concurrency = 2")
    done = cli("migrate", "--env", "prod", "--fleet", env=fleet.env)
    assert done.returncode == 8, done.stderr
    assert "Traceback" not in done.stderr
    for database in fleet.tenants.values():
        assert fleet.applied(database) == []
    assert not (fleet.project / "backups").exists()
    assert not (fleet.project / "logs" / "fleet-prod-migrate.json").exists()  # nothing to resume
    again = cli("migrate", "--env", "prod", "--fleet", "--yes", "--json", env=fleet.env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["resumed_from"] is None
    assert set(outcomes(again).values()) == {"applied"}
