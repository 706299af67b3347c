"""Issue 25: `predeploy health --env prod` checks every app host (pm2 over SSH, its health
URL), one line per host; a host whose app is down fails it (exit 7, named)."""

from __future__ import annotations

import dataclasses
import getpass
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.hosts_project import HostsProject, hosts_project
from support.ssh_hosts import SILENT_RELEASE, HostSite, app_hosts

pytestmark = pytest.mark.slow


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, pm2_bin: Path) -> Iterator[HostSite]:
    with app_hosts(tmp_path_factory.mktemp("hosts"), 3, pm2_bin=pm2_bin) as hosts:
        yield hosts


@pytest.fixture
def app(project: Path, database_url: str, site: HostSite) -> HostsProject:
    """The project with its migrations applied: health's database checks pass."""
    made = hosts_project(project, database_url, site)
    for phase in ((), ("--post-deploy",)):
        done = made.run("migrate", "--env", "prod", "--yes", *phase)
        assert done.returncode == 0, done.stderr
    return made


def host_lines(done: subprocess.CompletedProcess[str], site: HostSite) -> dict[str, list[str]]:
    """{host: the stdout lines naming it}."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stdout.splitlines()
    return {h.name: [x for x in lines if h.name in x] for h in site.hosts}


def test_every_host_healthy_one_line_each(app: HostsProject, site: HostSite) -> None:
    done = app.run("health", "--env", "prod")
    assert done.returncode == 0, done.stdout + done.stderr
    for name, lines in host_lines(done, site).items():
        assert len(lines) == 1, (name, done.stdout)


def test_json_names_every_host(app: HostsProject, site: HostSite) -> None:
    done = app.run("health", "--env", "prod", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    text = json.dumps(report)
    assert all(h.name in text for h in site.hosts), report


def test_a_stopped_app_fails_health_naming_its_host(app: HostsProject, site: HostSite) -> None:
    """web3's app is stopped: exit 7; web3's line says so; web1 and web2 are still checked."""
    site.by_name("web3").stop_app()
    done = app.run("health", "--env", "prod")
    assert done.returncode == 7, done.stdout + done.stderr
    lines = host_lines(done, site)
    assert all(len(found) == 1 for found in lines.values()), done.stdout
    assert lines["web1"][0].startswith("✓") and lines["web2"][0].startswith("✓"), lines
    assert lines["web3"][0].startswith("✗"), lines
    assert "web3" in done.stderr.splitlines()[-1], done.stderr  # the one-line verdict


def test_an_unreachable_host_is_named_and_the_others_checked(
    app: HostsProject, site: HostSite
) -> None:
    """web2's sshd is down: its line says it is unreachable and exit 7 (health's code for any
    failed check, an unreachable database's included: README); web1 and web3 are checked."""
    site.by_name("web2").stop_sshd()
    done = app.run("health", "--env", "prod")
    assert done.returncode == 7, done.stdout + done.stderr
    lines = host_lines(done, site)
    assert all(len(found) == 1 for found in lines.values()), done.stdout
    assert "unreachable" in lines["web2"][0] and "refused" in lines["web2"][0], lines
    assert "200" in lines["web1"][0] and "200" in lines["web3"][0], lines


def test_hosts_are_checked_at_once_each_within_its_connect_timeout(
    app: HostsProject, site: HostSite, silent_port: int
) -> None:
    """Three hosts whose SSH port accepts and never answers, connect_timeout = 3: each is
    named, and the run takes about one timeout, not three (the hosts are checked at once)."""
    user = getpass.getuser()
    silent = [dataclasses.replace(h, ssh=f"{user}@127.0.0.1:{silent_port}") for h in site.hosts]
    app.write_fleet(HostSite(silent, site.identity_file, site.known_hosts), connect_timeout=3)
    started = time.monotonic()
    done = app.run("health", "--env", "prod")
    took = time.monotonic() - started
    assert done.returncode == 7, done.stdout + done.stderr
    lines = host_lines(done, site)
    assert all(len(found) == 1 for found in lines.values()), done.stdout
    assert all("unreachable" in found[0] for found in lines.values()), done.stdout
    assert 3 <= took < 8, took


def test_maintenance_reports_an_unreachable_host_as_needing_attention(
    app: HostsProject, site: HostSite
) -> None:
    """Cron's `maintenance` runs the hosts' health too: web2's sshd down is a line naming
    it and exit 1 (needs attention), not a failure of the job."""
    site.by_name("web2").stop_sshd()
    done = app.run("maintenance", "--env", "prod")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert [x for x in done.stdout.splitlines() if "web2" in x and "unreachable" in x], done.stdout


def test_check_lists_the_hosts_without_reaching_them(app: HostsProject, site: HostSite) -> None:
    """`check` reads the hosts and lists them; with every sshd down it still passes (it does
    not reach them: health does)."""
    for host in site.hosts:
        host.stop_sshd()
    done = app.run("check", "--env", "prod")
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(h.name in done.stdout for h in site.hosts), done.stdout




def test_a_host_whose_health_url_never_answers_is_unhealthy(
    app: HostsProject, site: HostSite
) -> None:
    """web1's app accepts /health and never answers: its line says so (✗), exit 7, in
    bounded time, no traceback."""
    web1 = site.hosts[0]
    before = web1.pids()
    web1.release(SILENT_RELEASE)
    assert web1.pm2("reload", "web").returncode == 0
    assert web1.pids().isdisjoint(before) and web1.health() is None
    started = time.monotonic()
    done = app.run("health", "--env", "prod")
    assert time.monotonic() - started < 30
    lines = host_lines(done, site)
    assert len(lines["web1"]) == 1 and lines["web1"][0].startswith("✗"), done.stdout
    assert done.returncode == 7, done.stdout + done.stderr


def test_a_health_url_nobody_listens_on_is_unhealthy(app: HostsProject, site: HostSite) -> None:
    """web3's health_url names a closed port on a non-loopback address (asked from here):
    its line says so (✗), exit 7, no traceback."""
    web3 = site.hosts[2]
    with socket.socket() as probe:  # a port of this machine that nothing listens on
        probe.bind(("0.0.0.0", 0))  # noqa: S104
        closed = probe.getsockname()[1]
    address = outward_address()
    toml = site.toml().replace(web3.health_url, f"http://{address}:{closed}/health")
    (app.project / "predeploy.fleet.toml").write_text(toml)
    done = app.run("health", "--env", "prod")
    lines = host_lines(done, site)
    assert len(lines["web3"]) == 1 and lines["web3"][0].startswith("✗"), done.stdout
    assert done.returncode == 7, done.stdout + done.stderr


def outward_address() -> str:
    """This machine's address on its way out (not loopback); skip when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
            address = str(probe.getsockname()[0])
        except OSError as exc:
            pytest.skip(f"no non-loopback IPv4 address here: {exc}")
    if address.startswith("127."):
        pytest.skip("no non-loopback IPv4 address here")
    return address
