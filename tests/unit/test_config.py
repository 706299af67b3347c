"""Settings: file precedence, environments, durations, URLs and secrecy."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from predeploy.config.names import KNOWN_SETTINGS
from predeploy.config.project import available_envs, env_name, find_root
from predeploy.config.settings import load_settings, parse_duration
from predeploy.errors import ConfigError

URL = "postgresql://app:s3cr3t@db.example.com:5432/app"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_process_environment_wins_over_env_file_over_dotenv(tmp_path: Path) -> None:
    """`.env`, then `.env.<env>`, then the process environment: the later wins."""
    write(tmp_path / ".env", "PREDEPLOY_CONNECT_TIMEOUT=1s\nPREDEPLOY_LOG_DIR=from-dotenv\n")
    write(tmp_path / ".env.staging", f"DATABASE_URL={URL}\nPREDEPLOY_CONNECT_TIMEOUT=3s\n")
    settings = load_settings("staging", tmp_path, {"PREDEPLOY_LOG_DIR": "from-process"})
    assert settings.connect_timeout == 3.0
    assert settings.log_dir == tmp_path / "from-process"
    assert settings.files_read == (tmp_path / ".env", tmp_path / ".env.staging")


def test_empty_process_value_does_not_hide_file_value(tmp_path: Path) -> None:
    """An exported but empty variable counts as unset."""
    write(tmp_path / ".env.prod", f"DATABASE_URL={URL}\n")
    settings = load_settings("prod", tmp_path, {"DATABASE_URL": ""})
    assert settings.database_url is not None
    assert settings.database_url.host == "db.example.com"


def test_env_file_adds_an_environment(tmp_path: Path) -> None:
    """Any `.env.<name>` file adds env <name>; `.env.example` does not."""
    write(tmp_path / ".env.qa", f"DATABASE_URL={URL}\n")
    write(tmp_path / ".env.example", "DATABASE_URL=\n")
    assert available_envs(tmp_path) == ("dev", "staging", "prod", "qa")
    assert load_settings("qa", tmp_path, {}).env == "qa"


def test_unknown_env_names_the_available_ones(tmp_path: Path) -> None:
    """An unknown env is a configuration error listing every env there is."""
    with pytest.raises(
        ConfigError, match=r"unknown environment 'nosuch'.*dev, staging, prod"
    ) as err:
        load_settings("nosuch", tmp_path, {})
    assert err.value.exit_code == 2


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_missing_url_outside_dev_names_variable_and_files(tmp_path: Path, env: str) -> None:
    """staging and prod need DATABASE_URL; the error names it and the files read."""
    write(tmp_path / ".env", "PREDEPLOY_CONNECT_TIMEOUT=2s\n")
    with pytest.raises(ConfigError, match=rf"DATABASE_URL is not set for env '{env}'.*\.env\b"):
        load_settings(env, tmp_path, {})


def test_dev_without_url_uses_the_embedded_server(tmp_path: Path) -> None:
    """dev with no DATABASE_URL means the embedded server under .pgdata/."""
    settings = load_settings("dev", tmp_path, {})
    assert settings.uses_embedded
    assert settings.pgdata == tmp_path / ".pgdata"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://u:s3cr3t@h/db", "must be a URL starting with postgresql://"),
        ("db.example.com:5432", "must be a URL starting with postgresql://"),
        ("postgresql://u:s3cr3t@h:port/db", "invalid port"),
        ("postgresql://u:s3cr3t@h:70000/db", "invalid port"),
        ("postgresql://u:s3cr3t@h/db?pgbouncer=yes", "Prisma accepts only true or false"),
        ("postgresql://u:s3cr3t@h/db?connect_timeout=5s", "whole number of seconds"),
        ("postgresql://u:s3cr3t@h", "names no database"),
    ],
)
def test_malformed_url_is_a_config_error_without_the_password(
    tmp_path: Path, url: str, reason: str
) -> None:
    """A malformed URL exits 2 with the reason and never the password."""
    with pytest.raises(ConfigError, match=reason) as err:
        load_settings("prod", tmp_path, {"DATABASE_URL": url})
    assert "s3cr3t" not in str(err.value)


def test_direct_url_serves_migrations_and_backups(tmp_path: Path) -> None:
    """DIRECT_DATABASE_URL, when set, is the URL for migrations and backups."""
    direct = "postgresql://app:other@db-primary:5432/app"
    settings = load_settings("prod", tmp_path, {"DATABASE_URL": URL, "DIRECT_DATABASE_URL": direct})
    assert settings.migration_url is not None
    assert settings.migration_url.host == "db-primary"
    assert settings.secrets() == ("s3cr3t", "other")
    assert settings.migration_url_var == "DIRECT_DATABASE_URL"


def test_settings_repr_hides_passwords(tmp_path: Path) -> None:
    """repr and str of the settings and URLs carry no password."""
    settings = load_settings("prod", tmp_path, {"DATABASE_URL": URL})
    assert "s3cr3t" not in repr(settings)
    assert "s3cr3t" not in str(settings.database_url)
    assert "***" in str(settings.database_url)


def test_settings_are_frozen(tmp_path: Path) -> None:
    """Settings are read once and never change under a run."""
    settings = load_settings("dev", tmp_path, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.env = "prod"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2s", 2.0),
        ("500ms", 0.5),
        ("1min", 60.0),
        ("1.5", 1.5),
        ("10", 10.0),
        ("2 h", 7200.0),
        ("250us", 0.00025),
        ("1d", 86400.0),
    ],
)
def test_durations_accept_postgresql_units(text: str, seconds: float) -> None:
    """Durations take PostgreSQL's units or plain seconds."""
    assert parse_duration(text, "PREDEPLOY_LOCK_TIMEOUT") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "2 seconds", "-1s", "1m", ""])
def test_bad_duration_names_the_variable(text: str) -> None:
    """A bad duration says which variable and what is accepted."""
    with pytest.raises(ConfigError, match=r"PREDEPLOY_LOCK_TIMEOUT=.* is not a duration"):
        parse_duration(text, "PREDEPLOY_LOCK_TIMEOUT")


def test_zero_connect_timeout_is_refused(tmp_path: Path) -> None:
    """A connect timeout must be positive."""
    with pytest.raises(
        ConfigError, match="PREDEPLOY_CONNECT_TIMEOUT='0' must be greater than zero"
    ):
        load_settings("dev", tmp_path, {"PREDEPLOY_CONNECT_TIMEOUT": "0"})


def test_root_is_the_folder_with_tasks_py(tmp_path: Path) -> None:
    """The project root is found upward from the working folder."""
    (tmp_path / "tasks.py").write_text("")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_root(nested, {}) == tmp_path
    assert find_root(nested, {"PREDEPLOY_ROOT": str(nested)}) == nested


def test_env_name_defaults() -> None:
    """--env, else PREDEPLOY_ENV, else dev."""
    assert env_name("prod", {"PREDEPLOY_ENV": "staging"}) == "prod"
    assert env_name(None, {"PREDEPLOY_ENV": "staging"}) == "staging"
    assert env_name(None, {}) == "dev"


def test_deploy_and_health_settings(tmp_path: Path) -> None:
    """pm2, health and deploy settings: defaults and values."""
    write(tmp_path / ".env.prod", f"DATABASE_URL={URL}\nPREDEPLOY_PM2_APP=web\n")
    defaults = load_settings("prod", tmp_path, {})
    assert (defaults.pm2_app, defaults.pm2_bin, defaults.healthcheck_url) == ("web", None, None)
    assert (defaults.healthcheck_timeout, defaults.healthcheck_retries) == (5.0, 3)
    assert (defaults.deploy_wait, defaults.maintenance_vacuum) == (60.0, False)
    environ = {
        "PREDEPLOY_HEALTHCHECK_URL": "http://127.0.0.1:3000/health",
        "PREDEPLOY_HEALTHCHECK_TIMEOUT": "500ms",
        "PREDEPLOY_HEALTHCHECK_RETRIES": "5",
        "PREDEPLOY_DEPLOY_WAIT": "2min",
        "PREDEPLOY_MAINTENANCE_VACUUM": "1",
        "PREDEPLOY_PM2_BIN": "/opt/node/bin/pm2",
    }
    settings = load_settings("prod", tmp_path, environ)
    assert settings.healthcheck_timeout == 0.5
    assert (settings.healthcheck_retries, settings.deploy_wait) == (5, 120.0)
    assert settings.maintenance_vacuum
    assert settings.pm2_bin == Path("/opt/node/bin/pm2")


def test_healthcheck_url_must_be_http_and_is_not_echoed(tmp_path: Path) -> None:
    """A health URL that is not http(s) is exit 2 without its password."""
    write(tmp_path / ".env.prod", f"DATABASE_URL={URL}\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(
            "prod", tmp_path, {"PREDEPLOY_HEALTHCHECK_URL": "ftp://ops:hunter2@host/health"}
        )
    assert "PREDEPLOY_HEALTHCHECK_URL is not an http(s) URL (ftp)" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_lint_and_blocker_settings(tmp_path: Path) -> None:
    """Lint and blocker settings: defaults, values and a bad count."""
    write(tmp_path / ".env.prod", f"DATABASE_URL={URL}\n")
    defaults = load_settings("prod", tmp_path, {})
    assert defaults.lint_large_table_rows == 1_000_000
    assert (defaults.blocker_max_age, defaults.blocker_wait) == (60.0, 60.0)
    settings = load_settings(
        "prod",
        tmp_path,
        {
            "PREDEPLOY_LINT_LARGE_TABLE_ROWS": "50_000",
            "PREDEPLOY_BLOCKER_MAX_AGE": "5s",
            "PREDEPLOY_BLOCKER_WAIT": "0",
        },
    )
    assert settings.lint_large_table_rows == 50_000
    assert (settings.blocker_max_age, settings.blocker_wait) == (5.0, 0.0)
    with pytest.raises(ConfigError, match="PREDEPLOY_LINT_LARGE_TABLE_ROWS"):
        load_settings("prod", tmp_path, {"PREDEPLOY_LINT_LARGE_TABLE_ROWS": "many"})


def test_url_parameters_prisma_ignores_are_warned_not_refused(tmp_path: Path) -> None:
    """A parameter Prisma discards is dropped with a warning the caller can log."""
    settings = load_settings("prod", tmp_path, {"DATABASE_URL": f"{URL}?bogus=1"})
    assert any("?bogus=" in w for w in settings.warnings)


def test_env_names_are_lowercase_and_the_advice_names_the_real_file(tmp_path: Path) -> None:
    """--env Prod advises --env prod and the file really read, .env.prod."""
    write(tmp_path / ".env.Prod", f"DATABASE_URL={URL}\n")
    with pytest.raises(ConfigError) as err:
        load_settings("Prod", tmp_path, {})
    assert "use --env prod, which reads .env.prod" in err.value.message
    assert "rename .env.Prod to .env.prod" in err.value.message


def test_connect_timeout_is_what_libpq_really_waits(tmp_path: Path) -> None:
    """Below libpq's 2 s floor (or between whole seconds) the effective wait is recorded."""
    settings = load_settings("dev", tmp_path, {"PREDEPLOY_CONNECT_TIMEOUT": "500ms"})
    assert settings.connect_timeout == 2.0
    assert any("wait up to 2 s" in w for w in settings.warnings)
    rounded = load_settings("dev", tmp_path, {"PREDEPLOY_CONNECT_TIMEOUT": "2.5s"})
    assert rounded.connect_timeout == 3.0
    assert load_settings("dev", tmp_path, {}).warnings == ()


def test_connect_timeout_setting_is_the_default_of_urls_without_one(tmp_path: Path) -> None:
    """A URL's own connect_timeout wins; otherwise PREDEPLOY_CONNECT_TIMEOUT applies."""
    environ = {
        "PREDEPLOY_CONNECT_TIMEOUT": "10s",
        "DATABASE_URL": URL,
        "DIRECT_DATABASE_URL": f"{URL}?connect_timeout=30",
    }
    settings = load_settings("prod", tmp_path, environ)
    assert settings.database_url is not None
    assert settings.direct_database_url is not None
    assert settings.database_url.connect_params()["connect_timeout"] == "10"
    assert settings.direct_database_url.connect_params()["connect_timeout"] == "30"


def test_pg_bin_dir_must_exist_and_hold_pg_dump(tmp_path: Path) -> None:
    """PREDEPLOY_PG_BIN_DIR that is missing or has no pg_dump is exit 2 naming it."""
    with pytest.raises(ConfigError, match=r"PREDEPLOY_PG_BIN_DIR=.*nope is not a folder"):
        load_settings("dev", tmp_path, {"PREDEPLOY_PG_BIN_DIR": str(tmp_path / "nope")})
    (tmp_path / "bin").mkdir()
    with pytest.raises(ConfigError, match=r"PREDEPLOY_PG_BIN_DIR=.*bin holds no pg_dump"):
        load_settings("dev", tmp_path, {"PREDEPLOY_PG_BIN_DIR": str(tmp_path / "bin")})
    (tmp_path / "bin" / "pg_dump").write_text("")
    settings = load_settings("dev", tmp_path, {"PREDEPLOY_PG_BIN_DIR": str(tmp_path / "bin")})
    assert settings.pg_bin_dir == tmp_path / "bin"


def test_backup_jobs_zero_is_refused(tmp_path: Path) -> None:
    """PREDEPLOY_BACKUP_JOBS=0 is exit 2, not silently one job."""
    with pytest.raises(ConfigError, match=r"PREDEPLOY_BACKUP_JOBS='0' must be a whole number \(1"):
        load_settings("dev", tmp_path, {"PREDEPLOY_BACKUP_JOBS": "0"})


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, None), ("1", True), ("0", False), ("true", True), ("no", False)]
)
def test_protected_is_set_per_env(tmp_path: Path, raw: str | None, expected: bool | None) -> None:
    """PREDEPLOY_PROTECTED=1/0 sets protection for any env; unset leaves it to the policy."""
    environ = {} if raw is None else {"PREDEPLOY_PROTECTED": raw}
    assert load_settings("dev", tmp_path, environ).protected is expected


def test_bad_flag_is_refused(tmp_path: Path) -> None:
    """A flag that is not 1/0 (true/false, yes/no, on/off) is exit 2."""
    with pytest.raises(ConfigError, match="PREDEPLOY_PROTECTED='maybe' must be 1 or 0"):
        load_settings("dev", tmp_path, {"PREDEPLOY_PROTECTED": "maybe"})


def test_notification_settings(tmp_path: Path) -> None:
    """Notify URLs are a tuple (their secrets scrubbed); events and timeout have defaults."""
    defaults = load_settings("dev", tmp_path, {})
    assert defaults.notify_urls == ()
    assert defaults.notify_on == ("failure", "prod-change")
    assert (defaults.notify_timeout, defaults.log_keep_days) == (5.0, 90)
    settings = load_settings(
        "dev",
        tmp_path,
        {
            "PREDEPLOY_NOTIFY_URLS": "mailto://ops:m%40ilpw@example.com, "
            "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
            "PREDEPLOY_NOTIFY_ON": "success, drift",
            "PREDEPLOY_NOTIFY_TIMEOUT": "500ms",
            "PREDEPLOY_LOG_KEEP_DAYS": "30",
        },
    )
    assert len(settings.notify_urls) == 2
    assert settings.notify_on == ("success", "drift")
    assert (settings.notify_timeout, settings.log_keep_days) == (0.5, 30)
    assert {"m@ilpw", "m%40ilpw", "TIiajkdnlazkcOXrIdevi7FQ"} <= set(settings.secrets())
    everything = load_settings("dev", tmp_path, {"PREDEPLOY_NOTIFY_ON": "all"})
    assert everything.notify_on == ("failure", "prod-change", "success", "drift")


def test_bad_notification_settings_are_refused_without_echoing_urls(tmp_path: Path) -> None:
    """An unknown event suggests the closest; a URL without a scheme is not echoed."""
    with pytest.raises(ConfigError, match=r"'sucess' \(did you mean success\?\)"):
        load_settings("dev", tmp_path, {"PREDEPLOY_NOTIFY_ON": "sucess"})
    with pytest.raises(ConfigError) as err:
        load_settings("dev", tmp_path, {"PREDEPLOY_NOTIFY_URLS": "ops:hunter2@example.com"})
    assert "hunter2" not in err.value.message
    assert "URL 1 of 1 has no scheme" in err.value.message


def test_shadow_database_url_is_parsed_and_its_password_scrubbed(tmp_path: Path) -> None:
    """PREDEPLOY_SHADOW_DATABASE_URL is a DatabaseUrl whose password is a secret."""
    settings = load_settings(
        "dev", tmp_path, {"PREDEPLOY_SHADOW_DATABASE_URL": "postgresql://s:shpw@localhost/shadow"}
    )
    assert settings.shadow_database_url is not None
    assert settings.shadow_database_url.database == "shadow"
    assert settings.shadow_database_url_var == "PREDEPLOY_SHADOW_DATABASE_URL"
    assert "shpw" in settings.secrets()


def test_env_example_documents_every_setting() -> None:
    """.env.example has a line for every known PREDEPLOY_ setting, and only known ones."""
    text = (Path(__file__).parents[2] / ".env.example").read_text()
    documented = set(re.findall(r"^# (PREDEPLOY_[A-Z0-9_]+)=", text, re.M))
    assert documented == set(KNOWN_SETTINGS)


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("s3cr3t-pasted-alone", "has no ="),
        ("export PREDEPLOY_LOG_DIR", "has no ="),
        ("DIRECT_URL='postgresql://app:s3cr3t@db/app", "cannot be read as NAME=value"),
    ],
)
def test_a_line_that_is_not_name_value_is_an_error_naming_file_and_line(
    tmp_path: Path, line: str, what: str
) -> None:
    """A bare NAME, or an unclosed quote, is exit 2 naming the file and line; the line's
    text (perhaps a pasted secret) is not repeated."""
    write(tmp_path / ".env", "# predeploy\n\nPREDEPLOY_LOG_DIR=logs\n")
    write(tmp_path / ".env.staging", f"DATABASE_URL={URL}\n\n# next\n{line}\nPORT=3000\n")
    with pytest.raises(ConfigError, match=rf"^\.env\.staging line 4 {what}") as err:
        load_settings("staging", tmp_path, {})
    assert "s3cr3t" not in err.value.message and "PREDEPLOY_LOG_DIR" not in err.value.message
    assert err.value.exit_code == 2
