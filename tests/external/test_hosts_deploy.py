"""Issue 25, "Many app hosts": `predeploy deploy --env prod` over three real app hosts (an sshd,
a pm2 and the app each: support/ssh_hosts.py), driven as a user runs it. The database step
runs once from here; the app step host by host over SSH, each wave gated by its health."""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.hazards import wait_until
from support.hosts_project import (
    POST,
    PRE,
    RUN_TIMEOUT,
    HostsProject,
    hosts_project,
    outcomes,
    reported_pids,
)
from support.receivers import Receiver
from support.ssh_hosts import BROKEN_RELEASE, GOOD_RELEASE, HostSite, app_hosts, request_loop

pytestmark = pytest.mark.slow


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, pm2_bin: Path) -> Iterator[HostSite]:
    """web1, web2, web3: the app `web` in pm2 cluster mode (2 instances) on each."""
    with app_hosts(tmp_path_factory.mktemp("hosts"), 3, pm2_bin=pm2_bin) as hosts:
        yield hosts


@pytest.fixture
def app(project: Path, database_url: str, site: HostSite) -> HostsProject:
    """The project, its prod env deploying to the three hosts, serial = 1, max_fail = 0."""
    return hosts_project(project, database_url, site, serial=1, max_fail=0)


def said(done: Any) -> str:
    """What the run said to a person: stderr without its JSON log lines."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return "\n".join(x for x in done.stderr.splitlines() if x.strip() and not x.startswith("{"))


def runbook_of(report: dict[str, Any]) -> list[str]:
    """The runbook lines of the JSON, checked against the runbook file they came from."""
    lines: list[str] = report["runbook"]
    assert lines, "no runbook"
    path = report.get("runbook_path")
    assert path, "the runbook was not written to a file"
    kept = Path(path).read_text()
    assert all(line in kept for line in lines), kept
    return lines


def test_three_hosts_serial_1_all_good(app: HostsProject, site: HostSite) -> None:
    """Every host `reloaded` (new pids, 2 online instances each), one host at a time in file
    order; the pre-deploy migration applied once before the first reload, the post-deploy
    one once after the last; the JSON's pids are the ones pm2 runs now."""
    before = site.all_pids()
    done, report = app.deploy()
    assert done.returncode == 0, said(done)
    assert outcomes(report) == {"web1": "reloaded", "web2": "reloaded", "web3": "reloaded"}
    after = site.all_pids()
    for host in site.hosts:
        assert len(after[host.name]) == 2
        assert after[host.name].isdisjoint(before[host.name]), host.name
        assert {p["status"] for p in host.processes()} == {"online"}
        assert host.health() == 200
    assert reported_pids(report) == after
    history = app.history()
    assert [name for name, _s, _f in history] == [PRE, POST]  # each applied once
    pre_done, post_started = history[0][2], history[1][1]
    assert pre_done is not None
    waves = [host.started() for host in site.hosts]
    assert pre_done.timestamp() < waves[0][0]  # migrations before the first reload
    assert waves[0][-1] < waves[1][0] and waves[1][-1] < waves[2][0]  # serial = 1, in order
    assert waves[2][-1] < post_started.timestamp()  # post-deploy after the last wave


def test_second_host_broken_stops_the_rollout(
    app: HostsProject, site: HostSite, receiver: Receiver, apprise_loaded: None
) -> None:
    """web2's new release fails its health gate: exit 7, web1 reloaded, web2 failed, web3
    never reloaded (pids unchanged); no post-deploy migration; the runbook (JSON and file)
    and the one notification name the hosts on the new release and the one on the old."""
    app.env["PREDEPLOY_NOTIFY_URLS"] = receiver.url()
    app.env["PREDEPLOY_NOTIFY_TIMEOUT"] = "2s"
    web1, web2, web3 = site.hosts
    web2.release(BROKEN_RELEASE)
    before = site.all_pids()
    done, report = app.deploy()
    assert done.returncode == 7, said(done)
    assert "web2" in said(done)
    assert outcomes(report) == {"web1": "reloaded", "web2": "failed", "web3": "not reached"}
    assert web1.pids().isdisjoint(before["web1"])
    assert web2.pids().isdisjoint(before["web2"])  # it runs the new (broken) release
    assert web3.pids() == before["web3"]
    assert web1.health() == 200 and web2.health() == 503 and web3.health() == 200
    assert app.applied() == [PRE]  # the rollout stopped before the post-deploy phase
    runbook = runbook_of(report)
    text = "\n".join(runbook)
    state = {h.name: [x for x in runbook if x.startswith(f"#   {h.name} ")] for h in site.hosts}
    assert "the new release, healthy" in state["web1"][0], text
    assert "the new release, NOT healthy" in state["web2"][0], text
    assert "still the previous release" in state["web3"][0], text
    assert "# the new release runs on: web1, web2; the previous one on: web3" in runbook, text
    (payload,) = receiver.payloads()
    message = payload["title"] + payload["message"]
    assert "web1" in message and "web2" in message and "web3" in message, message

    # going back, as the runbook says: the previous code into web2's app folder, then its
    # reload line pasted as printed (ssh is the real client, told where the host keys are)
    web2.release(GOOD_RELEASE)
    reloads = [x for x in runbook if x.startswith("ssh ") and x.endswith("pm2 reload web'")]
    assert len(reloads) == 2 and "web3" not in "".join(reloads), reloads  # web1, web2 only
    (line,) = [x for x in reloads if f"-p {web2.ssh_port} " in x]
    pids = web2.pids()
    pasted = paste(line, site, app.project)
    assert pasted.returncode == 0, pasted.stderr
    assert web2.health() == 200 and web2.pids().isdisjoint(pids)


def paste(line: str, site: HostSite, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A runbook line run by /bin/sh as pasted; `ssh` on PATH is the real client with the
    hosts' keys known and no prompt (an operator's known_hosts has them)."""
    shims = cwd / "shims"
    shims.mkdir(exist_ok=True)
    ssh = shims / "ssh"
    ssh.write_text(
        "#!/bin/sh\n"
        f'exec /usr/bin/ssh -o BatchMode=yes -o UserKnownHostsFile={site.known_hosts} "$@"\n'
    )
    ssh.chmod(0o755)
    return subprocess.run(
        ["/bin/sh", "-c", line],
        cwd=cwd,
        env={"PATH": f"{shims}:/usr/bin:/bin", "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_an_unreachable_host_stops_everything_before_any_change(
    app: HostsProject, site: HostSite
) -> None:
    """web2's sshd is down: exit 3, one line naming web2, no host reloaded, no migration."""
    site.by_name("web2").stop_sshd()
    before = site.all_pids()
    started = time.monotonic()
    done, report = app.deploy()
    assert done.returncode == 3, said(done)
    assert time.monotonic() - started < 60
    lines = said(done).splitlines()
    assert len([line for line in lines if "web2" in line]) == 1, lines
    assert not [line for line in lines if "web1" in line or "web3" in line], lines
    assert site.all_pids() == before
    assert app.applied() == []
    assert "reloaded" not in outcomes(report).values()


def test_a_host_that_accepts_but_never_answers_is_bounded(
    app: HostsProject, site: HostSite, silent_port: int
) -> None:
    """web2's SSH port accepts TCP and never says a word: the connect timeout ends it,
    exit 3 naming web2, nothing reloaded, nothing applied."""
    hosts = list(site.hosts)
    hosts[1] = dataclasses.replace(hosts[1], ssh=f"{getpass.getuser()}@127.0.0.1:{silent_port}")
    app.write_fleet(HostSite(hosts, site.identity_file, site.known_hosts), serial=1)
    before = site.all_pids()
    started = time.monotonic()
    done, report = app.deploy()
    took = time.monotonic() - started
    assert done.returncode == 3, said(done)
    assert took < 90, took
    assert "web2" in said(done)
    assert site.all_pids() == before
    assert app.applied() == []
    assert "reloaded" not in outcomes(report).values()


def test_sigterm_between_waves(app: HostsProject, site: HostSite) -> None:
    """SIGTERM once web1 runs the new release and is healthy: exit 143, web1 reloaded, web3
    not reached (pids unchanged), web2 either not reached (pids unchanged) or named as
    interrupted/reloaded where its pids changed; no post-deploy migration; the JSON and
    the runbook say which hosts run what."""
    web1, web2, web3 = site.hosts
    before = site.all_pids()
    run = app.start("deploy", "--env", "prod", "--yes", "--json")
    try:
        wait_until(
            lambda: web1.pids().isdisjoint(before["web1"]) and web1.health() == 200,
            timeout=120,
            what="web1 reloaded and healthy",
        )
        os.kill(run.pid, signal.SIGTERM)
        out, err = run.communicate(timeout=RUN_TIMEOUT)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 143, err
    assert "Traceback" not in err
    report = json.loads(out)
    states = outcomes(report)
    assert states["web1"] == "reloaded", states
    assert states["web3"] == "not reached", states
    assert web3.pids() == before["web3"]
    if web2.pids() == before["web2"]:
        assert states["web2"] in ("not reached", "interrupted"), states
    else:
        assert states["web2"] in ("reloaded", "interrupted"), states
    assert POST not in app.applied()
    text = "\n".join(runbook_of(report))
    assert "web1" in text and "web3" in text, text


def test_no_failed_request_during_a_good_rollout_in_cluster_mode(
    app: HostsProject, site: HostSite
) -> None:
    """A request loop against every host's health URL during the rollout: not one refused,
    reset or non-2xx answer (pm2 cluster mode reloads one instance at a time)."""
    urls = [host.health_url for host in site.hosts]
    before = site.all_pids()
    with request_loop(urls) as loop:
        done, report = app.deploy()
    assert done.returncode == 0, said(done)
    assert set(outcomes(report).values()) == {"reloaded"}
    assert all(site.all_pids()[n].isdisjoint(p) for n, p in before.items())
    assert loop.requests > 50, loop.requests  # the loop really ran through the rollout
    assert loop.failures == [], loop.failures[:10]


def test_max_fail_1_goes_on_past_one_failed_host(app: HostsProject, site: HostSite) -> None:
    """With max_fail = 1 the broken web2 does not stop the rollout: web3 is reloaded; the
    run still exits 7 (a host is not healthy) and says which; the post-deploy migration
    is not applied (it waits until every host runs the new release)."""
    app.write_fleet(serial=1, max_fail=1)
    web1, web2, web3 = site.hosts
    web2.release(BROKEN_RELEASE)
    before = site.all_pids()
    done, report = app.deploy()
    assert done.returncode == 7, said(done)
    assert outcomes(report) == {"web1": "reloaded", "web2": "failed", "web3": "reloaded"}
    assert web3.pids().isdisjoint(before["web3"])
    assert web1.health() == 200 and web3.health() == 200 and web2.health() == 503
    assert "web2" in said(done)
    assert app.applied() == [PRE]  # post-deploy waits until every host runs the release


def test_sigterm_during_a_health_gate_names_the_host_interrupted(
    app: HostsProject, site: HostSite
) -> None:
    """web1's new release never gets healthy; SIGTERM while its gate waits: the run ends at
    once (not after the gate's 8 s), exit 143, web1 `interrupted` and on the new release,
    web2 and web3 not reached; the runbook's reload line for web1 only."""
    web1, web2, web3 = site.hosts
    web1.release(BROKEN_RELEASE)
    before = site.all_pids()
    run = app.start("deploy", "--env", "prod", "--yes", "--json")
    try:
        wait_until(lambda: web1.pids().isdisjoint(before["web1"]), timeout=120, what="web1")
        signalled = time.monotonic()
        os.kill(run.pid, signal.SIGTERM)
        out, err = run.communicate(timeout=RUN_TIMEOUT)
        took = time.monotonic() - signalled
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 143, err
    assert took < 6, took
    report = json.loads(out)
    assert outcomes(report) == {"web1": "interrupted", "web2": "not reached", "web3": "not reached"}
    assert web2.pids() == before["web2"] and web3.pids() == before["web3"]
    runbook = runbook_of(report)
    assert "# the new release runs on: web1; the previous one on: web2, web3" in runbook
    reloads = [x for x in runbook if x.startswith("ssh ") and x.endswith("pm2 reload web'")]
    assert len(reloads) == 1 and f"-p {web1.ssh_port} " in reloads[0], reloads


def test_serial_2_reloads_two_hosts_a_wave(app: HostsProject, site: HostSite) -> None:
    """serial = 2 over three hosts: web1 and web2 are wave 1, web3 wave 2, started only once
    both of wave 1 were reloaded."""
    app.write_fleet(serial=2)
    done, report = app.deploy()
    assert done.returncode == 0, said(done)
    assert {h["name"]: h["wave"] for h in report["hosts"]} == {"web1": 1, "web2": 1, "web3": 2}
    assert set(outcomes(report).values()) == {"reloaded"}
    web1, web2, web3 = (host.started() for host in site.hosts)
    assert max(web1[-1], web2[-1]) < web3[0]


def test_serial_percent_and_a_failed_wave(app: HostsProject, site: HostSite) -> None:
    """serial = "67%" of three hosts is waves of 2 (rounded down); web2's broken release
    fails wave 1: web1 (same wave) is reloaded, web3 is never reached; exit 7."""
    app.write_fleet(serial="67%")
    web1, web2, web3 = site.hosts
    web2.release(BROKEN_RELEASE)
    before = site.all_pids()
    done, report = app.deploy()
    assert done.returncode == 7, said(done)
    assert {h["name"]: h["wave"] for h in report["hosts"]} == {"web1": 1, "web2": 1, "web3": 2}
    assert outcomes(report) == {"web1": "reloaded", "web2": "failed", "web3": "not reached"}
    assert web3.pids() == before["web3"]
    assert web1.pids().isdisjoint(before["web1"])


def test_a_second_deploy_during_a_rollout_is_refused(app: HostsProject, site: HostSite) -> None:
    """A deploy is rolling out (web1 done); a second one started now waits
    PREDEPLOY_LOCK_WAIT (1 s here) for the rollout lock, then is refused as a busy lock
    (exit 6) having reloaded no host; the first completes."""
    web1 = site.hosts[0]
    before = web1.pids()
    first = app.start("deploy", "--env", "prod", "--yes", "--json")
    try:
        wait_until(lambda: web1.pids().isdisjoint(before), timeout=120, what="web1 reloaded")
        app.env["PREDEPLOY_LOCK_WAIT"] = "1s"  # the second's; the first keeps the default
        second, report = app.deploy()
        assert first.poll() is None, "the first deploy ended before the second was refused"
        out, err = first.communicate(timeout=RUN_TIMEOUT)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, err
    assert set(outcomes(json.loads(out)).values()) == {"reloaded"}
    reloaded = [h["name"] for h in report.get("hosts", []) if h["outcome"] == "reloaded"]
    assert reloaded == [], f"the second deploy reloaded {reloaded} during the first's rollout"
    assert second.returncode == 6, said(second)


def test_a_second_signal_ends_the_wait_for_a_reload_in_flight(
    app: HostsProject, site: HostSite
) -> None:
    """web2's pm2 hangs in `reload` (a wrapper named by its `pm2` key). SIGHUP while it
    hangs: the run lets the reload in flight finish (it is still running, having said so);
    a second signal ends that wait at once: exit 129 (the first signal's), web1 reloaded,
    web2 `interrupted` with release `new or previous`, web3 not reached."""
    web1, web2, web3 = site.hosts
    marker = web2.folder / "reload.pid"
    wrapper = web2.folder / "pm2-hangs-in-reload"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = reload ]; then echo $$ > {marker}; exec sleep 300; fi\n'
        f'exec {web2.pm2_bin} "$@"\n'
    )
    wrapper.chmod(0o755)
    toml = site.toml(serial=1, command_timeout=60).replace(
        f'name = "web2"\nssh = "{web2.ssh}"',
        f'name = "web2"\npm2 = "{wrapper}"\nssh = "{web2.ssh}"',
    )
    (app.project / "predeploy.fleet.toml").write_text(toml)
    before = site.all_pids()
    run = app.start("deploy", "--env", "prod", "--yes", "--json")
    logged: list[str] = []
    reader = threading.Thread(target=lambda: logged.extend(run.stderr or ()), daemon=True)
    reader.start()
    try:
        wait_until(marker.exists, timeout=120, what="web2's reload in flight")
        os.kill(run.pid, signal.SIGHUP)
        wait_until(
            lambda: any("rollout_stopping" in x for x in logged), what="the first signal taken"
        )
        assert run.poll() is None  # waiting for web2's reload in flight
        signalled = time.monotonic()
        os.kill(run.pid, signal.SIGTERM)
        out = run.stdout.read() if run.stdout else ""
        run.wait(timeout=RUN_TIMEOUT)
        took = time.monotonic() - signalled
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        if marker.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(marker.read_text()), signal.SIGKILL)
    reader.join(timeout=10)
    assert run.returncode == 129, "".join(logged)
    assert took < 6, took
    report = json.loads(out)
    assert outcomes(report) == {"web1": "reloaded", "web2": "interrupted", "web3": "not reached"}
    assert {h["name"]: h["release"] for h in report["hosts"]} == {
        "web1": "new",
        "web2": "new or previous",
        "web3": "previous",
    }
    assert web3.pids() == before["web3"]
    assert web1.pids().isdisjoint(before["web1"])


def test_the_deploy_tables_wait_bounds_a_hosts_gate(app: HostsProject, site: HostSite) -> None:
    """[deploy] wait = 2 (PREDEPLOY_DEPLOY_WAIT says 8 s): web1's broken release is given
    up on after about 2 s and the reason says so."""
    app.write_fleet(serial=1, wait=2)
    site.hosts[0].release(BROKEN_RELEASE)
    done, report = app.deploy()
    assert done.returncode == 7, said(done)
    (web1,) = [h for h in report["hosts"] if h["name"] == "web1"]
    assert web1["outcome"] == "failed"
    assert "2s" in web1["detail"], web1["detail"]
    assert web1["seconds"] < 7, web1["seconds"]  # the reload (~2-3 s) plus 2 s, not 8
