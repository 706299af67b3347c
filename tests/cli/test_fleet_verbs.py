"""Every verb over a fleet says its own outcome per target and reads every target.

A status, lint, drift, check, health, backup or maintenance finding on one tenant is that
tenant's word (behind, lint errors, drifted, unhealthy, needs attention), not a "failed"
target that spends the failure budget: the others are still read. A tenant that cannot be
reached is failed, and its exit code (3) outranks the others' findings (1).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cluster import free_port
from support.fleet_site import FleetSite, fleet_site, outcomes
from support.servers import Server

USERS = ("CREATE TABLE users (id int PRIMARY KEY, name text);", "DROP TABLE users;")
POSTS = ("CREATE TABLE posts (id int PRIMARY KEY);", "DROP TABLE posts;")
# max_fail = 0 and a canary first: a finding on the canary must stop nothing
STRICT = 'max_fail = 0\ngroups = ["canary", "rest"]\n'
GONE = '\n[[targets]]\nname = "gone"\ngroup = "rest"\nurl_var = "F4_GONE_URL"\n'


@pytest.fixture
def site(pg_server: Server, project: Path) -> Iterator[FleetSite]:
    """Tenants a (the canary), b and c; users applied on a and b, posts on a only."""
    groups = {"a": "canary", "b": "rest", "c": "rest"}
    with fleet_site(pg_server, project, ("a", "b", "c"), fleet=STRICT, groups=groups) as s:
        s.write("1_users", *USERS)
        s.migrate("a,b")
        s.write("2_posts", *POSTS)
        s.migrate("a")
        yield s


def test_status_names_each_tenant_and_check_fails_on_behind(site: FleetSite) -> None:
    """status --fleet: up to date / behind per tenant, exit 0; --check: exit 1."""
    code, data = site.fleet("status")
    assert code == 0, data
    assert outcomes(data) == {"a": "up to date", "b": "behind", "c": "behind"}
    by_name = {t["name"]: t for t in data["targets"]}
    assert {k: v for k, v in by_name["b"]["counts"].items() if v} == {"applied": 1, "pending": 1}
    code, data = site.fleet("status", "--check")
    assert code == 1
    assert outcomes(data) == {"a": "up to date", "b": "behind", "c": "behind"}


def test_status_check_is_3_when_a_tenant_is_unreachable_and_reads_the_others(
    pg_server: Server, project: Path
) -> None:
    """An unreachable tenant is failed (exit 3, not 5), and the others are read all the
    same, whatever max_fail says."""
    gone = f"postgresql://postgres:f4-unseen-pw@127.0.0.1:{free_port()}/nowhere"
    with fleet_site(pg_server, project, ("a", "b"), fleet="max_fail = 0\n", more=GONE) as s:
        s.env["F4_GONE_URL"] = gone
        s.write("1_users", *USERS)
        code, data = s.fleet("status", "--check")
        assert code == 3, data
        assert outcomes(data) == {"a": "behind", "b": "behind", "gone": "failed"}
        assert "f4-unseen-pw" not in json.dumps(data)


def test_status_drift_marks_the_drifted_tenant(site: FleetSite) -> None:
    """status --fleet --drift: a tenant changed by hand is drifted; --check exits 1."""
    site.execute("a", "CREATE TABLE by_hand (id int)")
    code, data = site.fleet("status", "--drift", "--check")
    assert code == 1
    assert outcomes(data) == {"a": "drifted", "b": "behind", "c": "behind"}


def test_drift_reads_every_tenant_and_exits_1_if_one_drifted(site: FleetSite) -> None:
    """The canary drifted: it is "drifted", the others were compared all the same."""
    site.execute("a", "CREATE TABLE by_hand (id int)")
    code, data = site.fleet("drift")
    assert code == 1
    assert outcomes(data) == {"a": "drifted", "b": "no drift", "c": "no drift"}
    assert {t["name"]: t["differences"] for t in data["targets"]} == {"a": 1, "b": 0, "c": 0}
    assert data["stopped"] is None
    site.execute("a", "DROP TABLE by_hand")
    code, data = site.fleet("drift")
    assert code == 0
    assert set(outcomes(data).values()) == {"no drift"}


def test_lint_is_sized_by_each_tenants_own_tables(site: FleetSite) -> None:
    """The same pending index is an error where the tenant's table is large, a warning
    where it is small: exit 1, and the names say which."""
    site.execute("a", "INSERT INTO users SELECT g, 'x' FROM generate_series(1, 500) g")
    site.execute("a", "ANALYZE users")
    site.write("3_index", "CREATE INDEX users_name ON users (name);")
    code, data = site.fleet("lint", "--only", "a,b", PREDEPLOY_LINT_LARGE_TABLE_ROWS="100")
    assert code == 1, data
    assert outcomes(data) == {"a": "lint errors", "b": "warnings"}
    counts = {t["name"]: t["findings"]["error"] for t in data["targets"]}
    assert counts == {"a": 1, "b": 0}
    code, data = site.fleet("lint", "--only", "b", PREDEPLOY_LINT_LARGE_TABLE_ROWS="100")
    assert code == 0
    assert outcomes(data) == {"b": "warnings"}


def test_rollback_undoes_where_applied_and_says_not_applied_elsewhere(site: FleetSite) -> None:
    """rollback --migrations 2_posts over the fleet: undone on a, "not applied" on b and
    c (nothing changed there), exit 0; the fleet runbook names what changed."""
    code, data = site.fleet("rollback", "--migrations", "2_posts", "--yes")
    assert code == 0, data
    assert outcomes(data) == {"a": "rolled back", "b": "not applied", "c": "not applied"}
    by_name = {t["name"]: t for t in data["targets"]}
    assert by_name["a"]["rolled_back"] == ["2_posts"]
    assert by_name["b"]["not_applied"] == ["2_posts"]
    assert site.applied("a") == ["1_users"]
    assert site.applied("b") == ["1_users"]
    assert site.applied("c") == []
    runbook = "\n".join(data["runbook"])
    assert "there is nothing to undo" not in runbook


def test_rollback_of_an_unknown_migration_fails_every_target(site: FleetSite) -> None:
    """A name no folder has is a usage error on every target (2), never "not applied"."""
    code, data = site.fleet("rollback", "--migrations", "9_nope", "--yes", "--fresh")
    assert code == 2, data
    assert outcomes(data)["a"] == "failed"
    assert site.applied("a") == ["1_users", "2_posts"]


def test_backup_takes_one_per_tenant_into_its_own_folder(site: FleetSite) -> None:
    """backup --fleet: a verified dump per tenant under backups/staging/targets/NAME/."""
    code, data = site.fleet("backup")
    assert code == 0, data
    assert set(outcomes(data).values()) == {"backed up"}
    for name in ("a", "b", "c"):
        folder = site.project / "backups" / "staging" / "targets" / name
        dumps = [d for d in folder.glob("*.dump") if "pre-migrate" not in d.name]
        assert len(dumps) == 1, list(folder.iterdir())
        assert {t["name"]: t["backup"] for t in data["targets"]}[name] == str(dumps[0])


def test_maintenance_needs_attention_per_tenant_and_runs_every_one(site: FleetSite) -> None:
    """maintenance --fleet: the tenants that are behind need attention (exit 1), the
    others are done; with max_fail = 0 every tenant still had its maintenance."""
    code, data = site.fleet("maintenance")
    assert code == 1, data
    assert outcomes(data) == {"a": "done", "b": "needs attention", "c": "needs attention"}
    assert data["stopped"] is None
    for name in ("a", "b", "c"):
        assert list((site.project / "backups" / "staging" / "targets" / name).glob("*_cron.dump"))


def test_check_and_health_over_the_fleet(site: FleetSite) -> None:
    """check: every tenant reachable (exit 0); health: the ones behind are unhealthy
    (exit 7), the canary's failure stops nothing."""
    code, data = site.fleet("check")
    assert code == 0, data
    assert set(outcomes(data).values()) == {"reachable"}
    site.execute("a", "DROP TABLE posts")  # the canary is fine as far as history goes
    code, data = site.fleet("health")
    assert code == 7, data
    assert outcomes(data) == {"a": "healthy", "b": "unhealthy", "c": "unhealthy"}
