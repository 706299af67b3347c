"""Issue 25, the operator's side of a rollout over real SSH hosts: host keys, hosts that
serve another env, hardened sshd settings, fork-mode apps, tokens in health URLs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.hazards import wait_until
from support.hosts_project import PRE, HostsProject, hosts_project, outcomes
from support.receivers import Receiver
from support.ssh_hosts import BROKEN_RELEASE, SILENT_RELEASE, HostSite, app_hosts

pytestmark = pytest.mark.slow


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, pm2_bin: Path) -> Iterator[HostSite]:
    """web1, web2: the app `web` in pm2 cluster mode on each."""
    with app_hosts(tmp_path_factory.mktemp("hosts"), 2, pm2_bin=pm2_bin) as hosts:
        yield hosts


@pytest.fixture
def app(project: Path, database_url: str, site: HostSite) -> HostsProject:
    return hosts_project(project, database_url, site, serial=1, max_fail=0)


def said(done: object) -> str:
    stderr = str(getattr(done, "stderr", ""))
    assert "Traceback" not in stderr, stderr
    return "\n".join(x for x in stderr.splitlines() if x.strip() and not x.startswith("{"))


def home_with(app: HostsProject, known_hosts: str | None) -> Path:
    """A HOME for the run whose ~/.ssh/known_hosts holds ``known_hosts`` (None: none)."""
    home = app.project / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    if known_hosts is not None:
        (home / ".ssh" / "known_hosts").write_text(known_hosts)
    app.env["HOME"] = str(home)
    return home


def test_a_host_key_that_does_not_match_known_hosts_is_refused(
    app: HostsProject, site: HostSite
) -> None:
    """web2's key in ~/.ssh/known_hosts is another one (a rebuilt host, or someone in the
    middle): exit 3 naming web2 and its host key; nothing reloaded, nothing applied."""
    web1, web2 = site.hosts
    lines = site.known_hosts.read_text().splitlines()
    other = (web1.folder / "host_ed25519.pub").read_text().split()
    lines[1] = f"[127.0.0.1]:{web2.ssh_port} {other[0]} {other[1]}"
    home_with(app, "\n".join(lines) + "\n")
    before = site.all_pids()
    done, report = app.deploy()
    assert done.returncode == 3, said(done)
    line = said(done)
    assert "web2" in line and "host key" in line, line
    assert site.all_pids() == before
    assert app.applied() == []
    assert "reloaded" not in outcomes(report).values()


def test_strict_host_keys_refuse_an_unknown_host_and_accept_a_known_one(
    app: HostsProject, site: HostSite
) -> None:
    """[deploy] strict_host_keys = true: with an empty known_hosts every host is refused
    (exit 3, nothing changed); with the hosts' keys in it the deploy goes through."""
    app.write_fleet(serial=1, strict_host_keys=True)
    home = home_with(app, None)
    before = site.all_pids()
    done, _report = app.deploy()
    assert done.returncode == 3, said(done)
    assert "web1" in said(done)
    assert site.all_pids() == before
    assert app.applied() == []
    (home / ".ssh" / "known_hosts").write_text(site.known_hosts.read_text())
    done, report = app.deploy()
    assert done.returncode == 0, said(done)
    assert set(outcomes(report).values()) == {"reloaded"}


def test_a_host_of_another_env_is_left_alone(app: HostsProject, site: HostSite) -> None:
    """web2 has env = "staging": a prod deploy reloads web1 only and never names web2."""
    toml = site.toml(serial=1).replace(
        f'name = "web2"\nssh = "{site.hosts[1].ssh}"',
        f'name = "web2"\nenv = "staging"\nssh = "{site.hosts[1].ssh}"',
    )
    assert 'env = "staging"' in toml
    (app.project / "predeploy.fleet.toml").write_text(toml)
    before = site.all_pids()
    done, report = app.deploy()
    assert done.returncode == 0, said(done)
    assert outcomes(report) == {"web1": "reloaded"}
    assert site.hosts[1].pids() == before["web2"]
    assert site.hosts[0].pids().isdisjoint(before["web1"])


def test_a_host_that_refuses_tcp_forwarding_is_found_before_anything_changes(
    app: HostsProject, site: HostSite
) -> None:
    """web1's sshd refuses forwarding (AllowTcpForwarding no), so its loopback health URL
    cannot be asked through SSH: that is found before the database or any host is touched
    (nothing reloaded, nothing applied), one line naming web1."""
    web1, _web2 = site.hosts
    web1.restart_sshd("AllowTcpForwarding no")
    before = site.all_pids()
    done, report = app.deploy()
    assert site.all_pids() == before, outcomes(report)
    assert app.applied() == []
    assert done.returncode == 3, said(done)
    line = said(done)
    assert "web1" in line and "AllowTcpForwarding no" in line, line


def test_a_health_url_token_never_shows(app: HostsProject, site: HostSite) -> None:
    """health_url with ?token=...: the deploy and health work, and the token appears in no
    output, log, runbook or audit file the run leaves behind."""
    secret = "tok3n-SEKRET-4242"
    toml = site.toml(serial=1).replace('/health"', f'/health?token={secret}"')
    (app.project / "predeploy.fleet.toml").write_text(toml)
    done, report = app.deploy()
    assert done.returncode == 0, said(done)
    assert set(outcomes(report).values()) == {"reloaded"}
    health = app.run("health", "--env", "prod", "--json")
    assert health.returncode == 0, health.stdout + health.stderr
    for text in (done.stdout, done.stderr, health.stdout, health.stderr):
        assert secret not in text
    left = [p for p in app.project.rglob("*") if p.is_file() and p.name != "predeploy.fleet.toml"]
    assert [p for p in left if secret.encode() in p.read_bytes()] == []
    assert PRE in app.applied()


def test_fork_mode_hosts_are_warned_about(
    project: Path, database_url: str, tmp_path_factory: pytest.TempPathFactory, pm2_bin: Path
) -> None:
    """The app runs in fork mode on the hosts: pm2 reload is then a restart (requests fail
    during it, FIELD-NOTES): the deploy says so, naming the hosts, as a single-host deploy
    does."""
    folder = tmp_path_factory.mktemp("forked")
    with app_hosts(folder, 2, cluster=False, pm2_bin=pm2_bin) as site:
        app = hosts_project(project, database_url, site, serial=1)
        done, report = app.deploy()
        assert done.returncode == 0, said(done)
        warnings = [w for w in report["warnings"] if "fork mode" in w]
        assert warnings, report["warnings"]
        assert all(h.name in " ".join(warnings) for h in site.hosts), warnings


def test_a_missing_identity_file_is_named(app: HostsProject, site: HostSite) -> None:
    """identity_file names a key that does not exist here: a configuration error (exit 2)
    in one line that names the file; nothing changed."""
    missing = site.identity_file.with_name("no_such_key")
    toml = site.toml(serial=1).replace(str(site.identity_file), str(missing))
    (app.project / "predeploy.fleet.toml").write_text(toml)
    before = site.all_pids()
    done, _report = app.deploy()
    assert site.all_pids() == before
    assert app.applied() == []
    line = said(done)
    assert str(missing) in line, line
    assert done.returncode == 2, line


def test_every_unreachable_host_is_named_once(app: HostsProject, site: HostSite) -> None:
    """Both sshds down: exit 3, nothing changed, the hosts list has one `unreachable` line
    for each, and the one-line verdict names each host once."""
    for host in site.hosts:
        host.stop_sshd()
    done, report = app.deploy()
    assert done.returncode == 3, said(done)
    assert app.applied() == []
    assert "reloaded" not in outcomes(report).values()
    listed = done.stdout  # --json: the hosts' lines are in the report
    assert all(h.name in listed for h in site.hosts)
    line = said(done).splitlines()[-1]
    assert line.count("web1") == 1 and line.count("web2") == 1, line


def test_a_reload_past_command_timeout_does_not_go_on_on_the_host(
    app: HostsProject, site: HostSite
) -> None:
    """web1's pm2 hangs in `reload` (a wrapper named by the host's `pm2` key): the run stops
    at command_timeout (3 s) with web1 failed, and the hung command does not outlive it on
    the host (its process is gone shortly after the run ends)."""
    web1 = site.hosts[0]
    marker = web1.folder / "reload.pid"
    wrapper = web1.folder / "pm2-hangs-in-reload"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = reload ]; then echo $$ > {marker}; exec sleep 300; fi\n'
        f'exec {web1.pm2_bin} "$@"\n'
    )
    wrapper.chmod(0o755)
    toml = site.toml(serial=1, command_timeout=3).replace(
        f'name = "web1"\nssh = "{web1.ssh}"',
        f'name = "web1"\npm2 = "{wrapper}"\nssh = "{web1.ssh}"',
    )
    assert str(wrapper) in toml
    (app.project / "predeploy.fleet.toml").write_text(toml)
    started = time.monotonic()
    done, report = app.deploy()
    assert time.monotonic() - started < 60
    assert done.returncode == 7, said(done)
    assert outcomes(report)["web1"] == "failed"
    pid = int(marker.read_text())
    try:
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=10, what="the hung reload")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _outward_address() -> str:
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


def test_a_health_url_not_on_loopback_is_asked_from_here(app: HostsProject, site: HostSite) -> None:
    """A health URL on the host's outward address (as a load balancer sees it) is asked
    from where predeploy runs, not through SSH: with forwarding refused by every sshd the
    deploy and health still pass."""
    address = _outward_address()
    for host in site.hosts:
        host.restart_sshd("AllowTcpForwarding no")
    toml = site.toml(serial=1).replace('"http://127.0.0.1:', f'"http://{address}:')
    assert toml.count(address) == len(site.hosts)
    (app.project / "predeploy.fleet.toml").write_text(toml)
    before = site.all_pids()
    done, report = app.deploy()
    assert done.returncode == 0, said(done)
    assert set(outcomes(report).values()) == {"reloaded"}
    assert all(site.all_pids()[n].isdisjoint(p) for n, p in before.items())
    health = app.run("health", "--env", "prod")
    assert health.returncode == 0, health.stdout + health.stderr
    assert health.stdout.count(f"GET http://{address}:") == len(site.hosts), health.stdout


def _daemon_of(home: Path) -> list[int]:
    """The pids of pm2 daemons whose PM2_HOME is ``home`` (their title names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "God Daemon" in title and f"({home})" in title:
                found.append(int(entry.name))
    return found


def test_a_host_whose_pm2_daemon_is_gone_is_exit_2_and_gets_no_new_daemon(
    app: HostsProject, site: HostSite
) -> None:
    """`pm2 kill` on web2 (its daemon and app gone): exit 2 naming web2 before anything
    changes, and predeploy did not start an empty daemon there."""
    web1, web2 = site.hosts
    assert _daemon_of(web2.pm2_home)
    assert web2.pm2("kill").returncode == 0
    wait_until(lambda: not _daemon_of(web2.pm2_home), what="web2's pm2 daemon to exit")
    before = web1.pids()
    done, report = app.deploy()
    assert done.returncode == 2, said(done)
    assert "web2" in said(done)
    assert web1.pids() == before
    assert app.applied() == []
    assert "reloaded" not in outcomes(report).values()
    assert _daemon_of(web2.pm2_home) == []


def test_a_health_url_that_never_answers_is_bounded(app: HostsProject, site: HostSite) -> None:
    """web1's new release accepts /health and never answers: the gate gives up within its
    wait (8 s) plus one request's timeout, exit 7 naming web1, web2 not reached."""
    web1, web2 = site.hosts
    web1.release(SILENT_RELEASE)
    before = web2.pids()
    started = time.monotonic()
    done, report = app.deploy()
    took = time.monotonic() - started
    assert done.returncode == 7, said(done)
    assert took < 60, took
    assert outcomes(report) == {"web1": "failed", "web2": "not reached"}
    assert "web1" in said(done)
    assert web2.pids() == before


def test_a_health_url_nobody_listens_on_fails_that_host_without_a_traceback(
    app: HostsProject, site: HostSite
) -> None:
    """web2's health_url is a closed port on the outward address: preflight warns (the new
    release may fix it), web1 is reloaded, web2's gate fails: exit 7, no traceback."""
    web2 = site.hosts[1]
    with socket.socket() as probe:  # a port of this machine that nothing listens on
        probe.bind(("0.0.0.0", 0))  # noqa: S104
        closed = probe.getsockname()[1]
    toml = site.toml(serial=1).replace(
        web2.health_url, f"http://{_outward_address()}:{closed}/health"
    )
    (app.project / "predeploy.fleet.toml").write_text(toml)
    done, report = app.deploy()
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 7, said(done)
    assert outcomes(report) == {"web1": "reloaded", "web2": "failed"}


def test_the_apps_environment_never_leaves_the_hosts(
    app: HostsProject, site: HostSite, receiver: Receiver, apprise_loaded: None
) -> None:
    """pm2 jlist carries each app's environment (APP_SECRET here): after a failed deploy
    (web2's broken release) and health, text and JSON, no secret is in any output, file
    left in the project, or the notification."""
    app.env["PREDEPLOY_NOTIFY_URLS"] = receiver.url()
    site.hosts[1].release(BROKEN_RELEASE)
    done, _report = app.deploy()
    assert done.returncode == 7, said(done)
    runs = [done, app.run("health", "--env", "prod"), app.run("health", "--env", "prod", "--json")]
    assert [r.returncode for r in runs[1:]] == [7, 7]
    left = [p for p in app.project.rglob("*") if p.is_file()]
    assert any(p.name.startswith("runbook-") for p in left)
    sent = [body for _path, body in receiver.requests]
    assert sent
    for host in site.hosts:
        token = host.app_secret
        assert host.app_secret in host.pm2("jlist").stdout  # it is there to leak
        for run in runs:
            assert token not in run.stdout + run.stderr
        assert [p for p in left if token.encode() in p.read_bytes()] == []
        assert not [body for body in sent if token.encode() in body]
