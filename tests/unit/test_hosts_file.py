"""The app hosts of the fleet file: what `[[hosts]]` and `[deploy]` accept, what they refuse
(one line each, never a password), which hosts serve an env, and the waves of a rollout."""

from __future__ import annotations

from pathlib import Path

import pytest

from predeploy.config.fleet import FILE, read_fleet
from predeploy.config.hosts import read_hosts
from predeploy.errors import ConfigError
from predeploy.integrations.notify import Event, event_from_report, message

HOST = """
[[hosts]]
name = "{name}"
ssh = "deploy@10.0.0.{n}:2222"
app_dir = "/srv/app/current"
pm2_app = "web"
health_url = "http://127.0.0.1:3000/health"
"""


def hosts_file(tmp_path: Path, text: str) -> Path:
    (tmp_path / FILE).write_text(text)
    return tmp_path


def three(extra: str = "") -> str:
    return extra + "".join(HOST.format(name=f"web{n}", n=n) for n in (1, 2, 3))


def test_no_file_or_no_host_for_the_env_means_a_local_deploy(tmp_path: Path) -> None:
    assert read_hosts(tmp_path, "prod") is None
    hosts_file(tmp_path, three().replace('pm2_app = "web"', 'pm2_app = "web"\nenv = "staging"'))
    assert read_hosts(tmp_path, "prod") is None
    staging = read_hosts(tmp_path, "staging")
    assert staging is not None
    assert [h.name for h in staging.hosts] == ["web1", "web2", "web3"]


def test_a_host_entry_is_read_whole(tmp_path: Path) -> None:
    text = three("[deploy]\nserial = 2\nmax_fail = 1\nconnect_timeout = 3\nwait = 20\n")
    rollout = read_hosts(hosts_file(tmp_path, text), "prod")
    assert rollout is not None
    web1 = rollout.hosts[0]
    assert (web1.user, web1.host, web1.port) == ("deploy", "10.0.0.1", 2222)
    assert web1.destination == "deploy@10.0.0.1:2222"
    assert (web1.app_dir, web1.pm2_app, web1.pm2_home) == ("/srv/app/current", "web", None)
    assert (rollout.connect_timeout, rollout.command_timeout, rollout.wait) == (3.0, 120.0, 20.0)
    assert [[h.name for h in wave] for wave in rollout.waves()] == [["web1", "web2"], ["web3"]]
    assert rollout.max_fail.allows(1, 3) and not rollout.max_fail.allows(2, 3)


@pytest.mark.parametrize(
    ("serial", "waves"),
    [
        ("1", [1, 1, 1, 1, 1]),
        ("2", [2, 2, 1]),
        ('"40%"', [2, 2, 1]),
        ('"10%"', [1, 1, 1, 1, 1]),  # rounded down, at least one host
        ('"100%"', [5]),
        ("9", [5]),
    ],
)
def test_serial_makes_waves_like_ansible(tmp_path: Path, serial: str, waves: list[int]) -> None:
    text = f"[deploy]\nserial = {serial}\n" + "".join(
        HOST.format(name=f"web{n}", n=n) for n in range(1, 6)
    )
    rollout = read_hosts(hosts_file(tmp_path, text), "prod")
    assert rollout is not None
    assert [len(wave) for wave in rollout.waves()] == waves


def test_ssh_destinations(tmp_path: Path) -> None:
    cases = {
        "web1": (None, "web1", None),  # an alias of ~/.ssh/config
        "deploy@web1": ("deploy", "web1", None),
        "[::1]:22": (None, "::1", 22),
        "ops@[fd00::5]:2200": ("ops", "fd00::5", 2200),
    }
    for ssh, expected in cases.items():
        text = HOST.format(name="a", n=1).replace('"deploy@10.0.0.1:2222"', f'"{ssh}"')
        rollout = read_hosts(hosts_file(tmp_path, text), "prod")
        assert rollout is not None
        host = rollout.hosts[0]
        assert (host.user, host.host, host.port) == expected, ssh


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (('"deploy@10.0.0.1:2222"', '"deploy:hunter2@10.0.0.1:2222"'), "must not hold a password"),
        (('pm2_app = "web"', 'pm2_app = "web"\npassword = "hunter2"'), "'password' would put"),
        (('pm2_app = "web"', 'pm2_app = "web"\nportt = 3'), "unknown key 'portt'"),
        (('"deploy@10.0.0.1:2222"', '"deploy@10.0.0.1:99999"'), "ssh must be user@host:port"),
        (('"/srv/app/current"', '"srv/app"'), "app_dir must be an absolute path"),
        (('pm2_app = "web"\n', ""), "pm2_app is required"),
        (('"http://127.0.0.1:3000/health"', '"ftp://x/health"'), "health_url must be an http(s)"),
        (('name = "a"', 'name = "a b"'), "name must be letters"),
    ],
)
def test_a_bad_host_entry_is_one_line_that_never_repeats_a_password(
    tmp_path: Path, change: tuple[str, str], said: str
) -> None:
    text = HOST.format(name="a", n=1).replace(*change)
    with pytest.raises(ConfigError) as caught:
        read_hosts(hosts_file(tmp_path, text), "prod")
    assert said in caught.value.message
    assert "hunter2" not in caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    ("deploy", "said"),
    [
        ("serial = 0", "[deploy] serial must be a number of hosts"),
        ('serial = "150%"', "[deploy] serial must be"),
        ('max_fail = "x"', "[deploy] max_fail must be a count"),
        ("connect_timeout = -1", "[deploy] connect_timeout must be a number of seconds"),
        ("strict_host_keys = 1", "strict_host_keys must be true or false"),
        ("paralel = 2", "unknown key 'paralel'"),
    ],
)
def test_a_bad_deploy_table_is_one_line(tmp_path: Path, deploy: str, said: str) -> None:
    with pytest.raises(ConfigError, match=r".") as caught:
        read_hosts(hosts_file(tmp_path, three(f"[deploy]\n{deploy}\n")), "prod")
    assert said in caught.value.message


def test_a_host_named_twice_is_refused(tmp_path: Path) -> None:
    text = HOST.format(name="web1", n=1) + HOST.format(name="web1", n=2)
    with pytest.raises(ConfigError, match="host 'web1' is named twice"):
        read_hosts(hosts_file(tmp_path, text), "prod")


def test_the_fleet_reads_a_file_that_also_has_hosts(tmp_path: Path) -> None:
    text = three('[[targets]]\nname = "acme"\ndatabase = "tenant_acme"\n')
    fleet = read_fleet(hosts_file(tmp_path, text))
    assert [t.name for t in fleet.targets] == ["acme"]


def test_the_notification_names_each_host_state() -> None:
    report = {
        "outcome": "failed",
        "error": "1 of 3 host(s) failed: web2",
        "hosts": [
            {"name": "web1", "outcome": "reloaded", "release": "new", "pids": [1]},
            {"name": "web2", "outcome": "failed", "release": "new", "pids": [2]},
            {"name": "web3", "outcome": "not reached", "release": "previous", "pids": [3]},
        ],
    }
    event = event_from_report(
        "deploy", report, env="prod", protected=True, database="", changed=True
    )
    assert isinstance(event, Event)
    body = message(event).body
    assert "hosts: reloaded web1; failed web2; not reached web3" in body
    assert "release: new on web1, web2; previous on web3" in body
    assert event.as_dict()["hosts"][1] == {"name": "web2", "outcome": "failed", "release": "new"}


def test_a_mistyped_table_is_refused_not_read_as_no_hosts(tmp_path: Path) -> None:
    text = three().replace("[[hosts]]", "[[host]]")
    with pytest.raises(ConfigError, match="unknown table 'host'"):
        read_hosts(hosts_file(tmp_path, text), "prod")


def test_two_entries_for_one_app_are_refused(tmp_path: Path) -> None:
    text = HOST.format(name="web1", n=1) + HOST.format(name="web1b", n=1)
    with pytest.raises(ConfigError, match="hosts web1 and web1b are the same app"):
        read_hosts(hosts_file(tmp_path, text), "prod")


def test_a_deploy_table_without_hosts_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[deploy\] without \[\[hosts\]\]"):
        read_hosts(hosts_file(tmp_path, "[deploy]\nserial = 2\n"), "prod")
