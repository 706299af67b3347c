"""The app hosts of tests/support/ssh_hosts.py are real: the real `ssh` client reaches each
host's sshd with the throwaway key and sees that host's pm2 run the app; a stopped sshd
refuses; a reload picks up the release on disk."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.hazards import wait_until
from support.ssh_hosts import BROKEN_RELEASE, HostSite, app_hosts, request_loop, ssh_argv

pytestmark = pytest.mark.slow


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, pm2_bin: Path) -> Iterator[HostSite]:
    with app_hosts(tmp_path_factory.mktemp("hosts"), 2, pm2_bin=pm2_bin) as hosts:
        yield hosts


def remote(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL
    )


def test_ssh_reaches_each_host_and_its_own_pm2(site: HostSite) -> None:
    """Over real SSH, each host's pm2 (its PM2_HOME, its app folder) lists the app `web`
    with that host's pids, cluster mode, 2 instances; the hosts share nothing."""
    seen: list[set[int]] = []
    for host in site.hosts:
        command = (
            f"cd {host.app_dir} && PM2_HOME={host.pm2_home} PM2_DISCRETE_MODE=true "
            "./node_modules/.bin/pm2 jlist"
        )
        done = remote(ssh_argv(host, command))
        assert done.returncode == 0, done.stderr + host.sshd_log()
        listed = [p for p in json.loads(done.stdout) if p["name"] == "web"]
        assert {p["pm2_env"]["exec_mode"] for p in listed} == {"cluster_mode"}
        assert {p["pid"] for p in listed} == host.pids()
        assert len(host.pids()) == 2
        assert host.health() == 200
        seen.append(host.pids())
    assert seen[0].isdisjoint(seen[1])
    assert "Accepted publickey" in site.hosts[0].sshd_log()


def test_a_stopped_sshd_refuses_and_the_others_still_answer(site: HostSite) -> None:
    first, second = site.hosts
    first.stop_sshd()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", first.ssh_port), timeout=2).close()
    done = remote(ssh_argv(first, "true"))
    assert done.returncode == 255  # ssh's own "could not connect"
    assert "Connection refused" in done.stderr
    assert remote(ssh_argv(second, "true")).returncode == 0
    assert first.health() == 200  # the app keeps running: only SSH is gone


def test_a_reload_over_ssh_picks_up_the_release_on_disk(site: HostSite) -> None:
    """release() is what a deploy's reload runs next: here a broken one answers 503."""
    host = site.hosts[0]
    before = host.pids()
    host.release(BROKEN_RELEASE)
    assert host.health() == 200  # nothing restarted yet
    reload = f"cd {host.app_dir} && PM2_HOME={host.pm2_home} ./node_modules/.bin/pm2 reload web"
    done = remote(ssh_argv(host, reload))
    assert done.returncode == 0, done.stderr
    assert host.pids().isdisjoint(before)
    assert host.health() == 503


def test_stop_app_and_the_request_loop_sees_it(site: HostSite) -> None:
    """The request loop records refused requests (so a clean loop means something)."""
    host = site.hosts[1]
    with request_loop([host.health_url]) as loop:
        host.stop_app()
        count = loop.requests
        wait_until(lambda: loop.requests > count + 2, what="more requests")
    assert loop.failures, "the loop saw no failure with the app stopped"
    assert any("Connection refused" in f or "ConnectionRefused" in f for f in loop.failures)
    assert {p["status"] for p in host.processes()} == {"stopped"}


def test_reloading_each_host_over_ssh_loses_no_request(site: HostSite) -> None:
    """The baseline of the rollout test: pm2 reloads of every host in turn (cluster mode,
    the graceful app, the kernel's scheduling) with a request loop running: not one failed
    request, so one in a deploy's rollout is the deploy's doing."""
    with request_loop([host.health_url for host in site.hosts]) as loop:
        for _ in range(3):
            for host in site.hosts:
                before = host.pids()
                reload = (
                    f"cd {host.app_dir} && PM2_HOME={host.pm2_home} "
                    "./node_modules/.bin/pm2 reload web"
                )
                done = remote(ssh_argv(host, reload))
                assert done.returncode == 0, done.stderr
                assert host.pids().isdisjoint(before)
    assert loop.requests > 100, loop.requests
    assert loop.failures == [], loop.failures[:10]
