"""Issue 25 with a fleet of databases: `deploy --fleet` runs the fleet's pre-deploy phase,
the rollout over the app hosts, then the fleet's post-deploy phase."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.fleet_site import FleetSite, fleet_site
from support.fleet_site import outcomes as targets
from support.hosts_project import outcomes as hosts
from support.servers import Server
from support.ssh_hosts import BROKEN_RELEASE, HostSite, app_hosts

pytestmark = pytest.mark.slow

USERS = ("CREATE TABLE users (id int PRIMARY KEY);", "DROP TABLE users;")
NOTES = ("-- predeploy: post-deploy\nCREATE TABLE notes (id int);", "DROP TABLE notes;")


@pytest.fixture
def hosts_site(tmp_path_factory: pytest.TempPathFactory, pm2_bin: Path) -> Iterator[HostSite]:
    with app_hosts(tmp_path_factory.mktemp("hosts"), 3, pm2_bin=pm2_bin) as made:
        yield made


@pytest.fixture
def site(pg_server: Server, project: Path, hosts_site: HostSite) -> Iterator[FleetSite]:
    """Tenants a and b; the hosts web1..web3 in the same predeploy.fleet.toml."""
    with fleet_site(pg_server, project, ("a", "b"), more="\n" + hosts_site.toml(serial=1)) as s:
        with (s.project / ".env.staging").open("a") as env_file:
            env_file.write("PREDEPLOY_DEPLOY_WAIT=8s\nPREDEPLOY_HEALTHCHECK_RETRIES=1\n")
        s.write("1_users", *USERS)
        s.write("2_notes", *NOTES)
        yield s


def test_fleet_pre_phase_then_the_rollout_then_the_post_phase(
    site: FleetSite, hosts_site: HostSite
) -> None:
    """Both tenants get 1_users, every host is reloaded (new pids), then both get 2_notes."""
    before = hosts_site.all_pids()
    code, data = site.fleet("deploy", "--yes")
    assert code == 0, data
    assert hosts(data) == {"web1": "reloaded", "web2": "reloaded", "web3": "reloaded"}
    after = hosts_site.all_pids()
    assert all(after[n].isdisjoint(p) for n, p in before.items())
    assert site.applied("a") == site.applied("b") == ["1_users", "2_notes"]
    assert set(targets(data).values()) == {"applied"}


def test_a_broken_host_stops_the_fleet_before_its_post_phase(
    site: FleetSite, hosts_site: HostSite
) -> None:
    """web2's new release fails its gate: exit 7, web3 never reloaded, and no tenant gets
    the post-deploy migration."""
    web1, web2, web3 = hosts_site.hosts
    web2.release(BROKEN_RELEASE)
    before = hosts_site.all_pids()
    code, data = site.fleet("deploy", "--yes")
    assert code == 7, data
    assert hosts(data) == {"web1": "reloaded", "web2": "failed", "web3": "not reached"}
    assert web3.pids() == before["web3"]
    assert web1.pids().isdisjoint(before["web1"])
    assert site.applied("a") == site.applied("b") == ["1_users"]
