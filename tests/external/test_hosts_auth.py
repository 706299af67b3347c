"""Issue 25: authentication is the user's own: the hosts reached through `~/.ssh/config`
aliases (Fabric reads it) or through the ssh agent, with no key named in the file."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.hazards import wait_until
from support.hosts_project import HostsProject, hosts_project, outcomes
from support.ssh_hosts import HostSite, app_hosts

pytestmark = pytest.mark.slow


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory, pm2_bin: Path) -> Iterator[HostSite]:
    with app_hosts(tmp_path_factory.mktemp("hosts"), 2, pm2_bin=pm2_bin) as hosts:
        yield hosts


@pytest.fixture
def app(project: Path, database_url: str, site: HostSite) -> HostsProject:
    made = hosts_project(project, database_url, site, serial=1)
    home = project / "home"
    (home / ".ssh").mkdir(parents=True)
    made.env["HOME"] = str(home)  # the run's ~ (Fabric and paramiko read ~/.ssh there)
    return made


def keyless(toml: str) -> str:
    """The fleet file without any identity_file line."""
    return re.sub(r"^identity_file = .*\n", "", toml, flags=re.M)


def deployed(app: HostsProject, site: HostSite) -> None:
    before = site.all_pids()
    done, report = app.deploy()
    assert done.returncode == 0, done.stderr
    assert set(outcomes(report).values()) == {"reloaded"}
    assert all(site.all_pids()[n].isdisjoint(p) for n, p in before.items())


def test_hosts_by_their_ssh_config_alias(app: HostsProject, site: HostSite) -> None:
    """`ssh = "web1-box"`, and ~/.ssh/config says where web1-box is (HostName, Port, User,
    IdentityFile): the deploy reaches every host that way."""
    home = Path(app.env["HOME"])
    config = "".join(
        f"Host {h.name}-box\n  HostName 127.0.0.1\n  Port {h.ssh_port}\n"
        f"  User {h.ssh.split('@')[0]}\n  IdentityFile {site.identity_file}\n"
        for h in site.hosts
    )
    (home / ".ssh" / "config").write_text(config)
    toml = keyless(site.toml(serial=1))
    for host in site.hosts:
        toml = toml.replace(f'ssh = "{host.ssh}"', f'ssh = "{host.name}-box"')
    assert "127.0.0.1:" not in toml.split("health_url")[0]
    (app.project / "predeploy.fleet.toml").write_text(toml)
    deployed(app, site)


@pytest.fixture
def agent(tmp_path: Path, site: HostSite) -> Iterator[str]:
    """An ssh-agent holding the client key; its socket path (SSH_AUTH_SOCK)."""
    sock = tmp_path / "agent.sock"
    process = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(sock.exists, what="ssh-agent's socket")
        added = subprocess.run(
            ["ssh-add", str(site.identity_file)],
            env={"SSH_AUTH_SOCK": str(sock), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert added.returncode == 0, added.stderr
        yield str(sock)
    finally:
        process.kill()
        process.wait(timeout=30)


def test_hosts_through_the_ssh_agent(app: HostsProject, site: HostSite, agent: str) -> None:
    """No identity_file and no ~/.ssh key: the agent (SSH_AUTH_SOCK) authenticates."""
    (app.project / "predeploy.fleet.toml").write_text(keyless(site.toml(serial=1)))
    app.env["SSH_AUTH_SOCK"] = agent
    deployed(app, site)
