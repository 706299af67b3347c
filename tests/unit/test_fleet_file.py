"""The fleet file: what it accepts, what it refuses (one line each), and each target's
settings (URLs placed on the env's server, passwords never from the file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from predeploy._util.pasted import targeted
from predeploy.cli import fleet_flags
from predeploy.config.fleet import FILE, Budget, read_fleet, settings_for
from predeploy.config.settings import load_settings
from predeploy.errors import ConfigError

URL = "postgresql://app:fl33t-s3cret@db.example.com:5432/app"


@pytest.fixture(autouse=True)
def _flags_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """extract() sets the process's flags: each test's are undone after it."""
    monkeypatch.setattr(fleet_flags, "_current", fleet_flags.FleetFlags())


def fleet_file(tmp_path: Path, text: str) -> Path:
    (tmp_path / FILE).write_text(text)
    return tmp_path


GOOD = """
[fleet]
concurrency = 8
per_server = 2
max_fail = "10%"
groups = ["canary", "rest"]

[[targets]]
name = "acme"
group = "canary"
database = "tenant_acme"

[[targets]]
name = "globex"
schema = "globex"

[[targets]]
name = "eu"
url_var = "EU_URL"
schema = "eu"
"""


def test_a_good_file_reads_in_group_order(tmp_path: Path) -> None:
    fleet = read_fleet(fleet_file(tmp_path, GOOD))
    assert (fleet.concurrency, fleet.per_server, str(fleet.max_fail)) == (8, 2, "10%")
    assert [t.name for t in fleet.targets] == ["acme", "globex", "eu"]
    assert [t.group for t in fleet.targets] == ["canary", "rest", "rest"]  # the last by default
    assert fleet.source == f"{FILE} [[targets]]"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "names no target"),
        ("[fleet]\nconcurrency = 0\n[[targets]]\nname='a'\n", "concurrency must be a whole"),
        ("[fleet]\nmax_fail = 'lots'\n[[targets]]\nname='a'\n", "max_fail must be a count"),
        ("[fleet]\nmax_fail = '150%'\n[[targets]]\nname='a'\n", "max_fail must be a count"),
        ("[[targets]]\nname='a'\nurl='postgresql://u:pw@h/d'\n", "password in the repository"),
        ("[[targets]]\nname='a b'\n", "name must be letters"),
        ("[[targets]]\nname='a'\n[[targets]]\nname='a'\n", "named twice"),
        ("[[targets]]\nname='a'\ndatbase='x'\n", "unknown key 'datbase'"),
        ("[fleet]\ngroups=['c']\n[[targets]]\nname='a'\ngroup='other'\n", "is not one of"),
        ("[[targets]]\nname='a'\nurl_var='not a var'\n", "url_var must name"),
        ("[flet]\n", "unknown table 'flet'"),
        ("[fleet\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line(tmp_path: Path, text: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said) as caught:
        read_fleet(fleet_file(tmp_path, text))
    assert "\n" not in caught.value.message and caught.value.exit_code == 2


def test_no_file_says_where_it_is_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"--fleet needs {FILE} at the project root"):
        read_fleet(tmp_path)


@pytest.mark.parametrize(
    ("budget", "failures", "total", "allowed"),
    [
        (Budget(0), 0, 10, True),
        (Budget(0), 1, 10, False),
        (Budget(2), 2, 10, True),
        (Budget(2), 3, 10, False),
        (Budget(percent=10), 1, 10, True),
        (Budget(percent=10), 2, 10, False),
        (Budget(percent=10), 1, 5, False),  # 10 % of 5 is 0 failures
    ],
)
def test_the_failure_budget(budget: Budget, failures: int, total: int, allowed: bool) -> None:
    assert budget.allows(failures, total) is allowed


def test_each_target_gets_its_own_url_and_the_password_stays_secret(tmp_path: Path) -> None:
    fleet_file(tmp_path, GOOD)
    (tmp_path / ".env.prod").write_text(f"DATABASE_URL={URL}\n")
    eu = "postgresql://eu:eu-s3cret-pw@eu.example.com:6432/eu_app"
    settings = load_settings("prod", tmp_path, {"EU_URL": eu})
    acme, globex, eu_target = read_fleet(tmp_path).targets
    server = settings.migration_url
    own = settings_for(settings, acme, server)
    assert own.migration_url is not None and own.migration_url.database == "tenant_acme"
    assert own.migration_url.host == "db.example.com" and own.migration_url.schema is None
    schema = settings_for(settings, globex, server).migration_url
    assert schema is not None and (schema.database, schema.schema) == ("app", "globex")
    placed = settings_for(settings, eu_target, server)
    assert (
        placed.migration_url is not None and placed.migration_url.address == "eu.example.com:6432"
    )
    assert placed.migration_url.schema == "eu"
    assert "eu-s3cret-pw" in placed.secrets()
    assert "eu-s3cret-pw" not in repr(placed) and "eu-s3cret-pw" not in str(placed.migration_url)
    assert placed.env_words == ("--env", "prod", "--target", "eu")
    assert placed.backup.folder == tmp_path / "backups" / "prod" / "targets" / "eu"


def test_a_target_whose_variable_is_unset_is_named(tmp_path: Path) -> None:
    fleet_file(tmp_path, GOOD)
    (tmp_path / ".env.prod").write_text(f"DATABASE_URL={URL}\n")
    settings = load_settings("prod", tmp_path, {})
    eu = read_fleet(tmp_path).targets[2]
    with pytest.raises(ConfigError, match="target eu: EU_URL is not set"):
        settings_for(settings, eu, settings.migration_url)


@pytest.mark.parametrize(
    ("line", "aimed"),
    [
        (
            "predeploy rollback --env prod --migrations a,b --yes",
            "predeploy rollback --env prod --target acme --migrations a,b --yes",
        ),
        (
            "PM2_HOME=/srv/.pm2 predeploy health --env prod",
            "PM2_HOME=/srv/.pm2 predeploy health --env prod --target acme",
        ),
        (
            "/opt/v/bin/predeploy restore --env prod --backup '/b/a b.dump' --yes",
            "/opt/v/bin/predeploy restore --env prod --target acme --backup '/b/a b.dump' --yes",
        ),
        ("# predeploy migrate --env prod", "# predeploy migrate --env prod"),
        ("pm2 stop app", "pm2 stop app"),
        ("predeploy status --env prod --target acme", "predeploy status --env prod --target acme"),
    ],
)
def test_runbook_lines_are_aimed_at_their_target(line: str, aimed: str) -> None:
    assert targeted(line, "acme") == aimed


@pytest.mark.parametrize(
    ("argv", "kept", "flags"),
    [
        (
            ["predeploy", "migrate", "--env", "prod", "--fleet", "--only", "a,b", "--yes"],
            ["predeploy", "migrate", "--env", "prod", "--yes"],
            {"fleet": True, "only": ("a", "b"), "yes": True},
        ),
        (
            ["predeploy", "-v", "status", "--fleet", "--group=canary", "--check"],
            ["predeploy", "-v", "status", "--check"],
            {"fleet": True, "group": "canary"},
        ),
        (
            ["predeploy", "restore", "--target", "acme", "--yes"],
            ["predeploy", "restore", "--yes"],
            {"target": "acme", "fleet": False},
        ),
    ],
)
def test_the_fleet_flags_come_out_of_the_command_line(
    argv: list[str], kept: list[str], flags: dict[str, object]
) -> None:
    assert fleet_flags.extract(argv) == kept
    found = fleet_flags.current()
    for name, value in flags.items():
        assert getattr(found, name) == value


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["predeploy", "new", "x", "--fleet"], "does not run over a fleet"),
        (["predeploy", "init", "--target", "a"], "does not act on a fleet's target"),
        (["predeploy", "migrate", "--only", "a"], "narrows a fleet run: add --fleet"),
        (["predeploy", "migrate", "--fleet", "--target", "a"], "not both"),
        (["predeploy", "migrate", "--fleet", "--only"], "--only needs a value"),
        (["predeploy", "migrate", "--fleet", "--only", ","], "--only is empty"),
    ],
)
def test_fleet_flags_misused_are_usage_errors(argv: list[str], said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        fleet_flags.extract(argv)
