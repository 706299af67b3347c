"""What stands for a secret in logs and URLs is masked, in every form it takes."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import quote

import pytest
import structlog

from predeploy._util import log as log_mod

# every character a URL must percent-encode, and the passfile's own separators
SPECIAL = "S3cr/et@Pa:ss%w#rd?x \\y"


def forms(password: str) -> list[str]:
    """The password as written and in the forms a URL or a passfile would carry it."""
    return [password, quote(password, safe=""), quote(password), password.replace(":", "\\:")]


def test_log_scrubbing_covers_nested_and_encoded_values(tmp_path: Path) -> None:
    """A password nested in dicts, lists and objects, raw or percent-encoded, never reaches
    the log file or the screen."""
    password = SPECIAL
    screen = io.StringIO()
    setup = log_mod.configure(
        env="staging",
        log_dir=tmp_path / "logs",
        json_output=True,
        secrets=[password],
        stream=screen,
    )
    try:
        structlog.get_logger("t").warning(
            "nested",
            detail={"url": f"postgresql://app:{quote(password, safe='')}@h/db"},
            items=[("x", {"deep": [f"pw={password}"]})],
            plus=f"password={quote(password)}",
            error=ValueError(f"bad {password}"),
        )
    finally:
        structlog.reset_defaults()  # later tests log through their own configuration
    assert setup.log_file is not None
    for text in (setup.log_file.read_text(), screen.getvalue()):
        assert "nested" in text
        for form in forms(password):
            assert form not in text
        assert "***" in text


@pytest.mark.parametrize(
    ("sql_text", "masked"),
    [
        ("CREATE ROLE a LOGIN PASSWORD 'x''y z'", "CREATE ROLE a LOGIN PASSWORD '***'"),
        ("alter user a with encrypted password 'S3' valid until 'x'", None),
        ("ALTER ROLE a PASSWORD $pw$se'cr$pw$;", "ALTER ROLE a PASSWORD '***';"),
        ("CREATE ROLE a PASSWORD E'a\\'b';", "CREATE ROLE a PASSWORD '***';"),
        ("CREATE ROLE a PASSWORD 'cut off…\nnext line", "CREATE ROLE a PASSWORD '***'\nnext line"),
        ("CREATE ROLE a PASSWORD NULL", "CREATE ROLE a PASSWORD NULL"),
        ("host=h password=s3cret dbname=x", "host=h password=*** dbname=x"),
        ("PGPASSWORD=s3cret psql", "PGPASSWORD=*** psql"),
        ("see mysql://u:pa55@h/db", "see mysql://u:***@h/db"),
    ],
)
def test_what_stands_in_a_passwords_place_is_masked_unknown(
    sql_text: str, masked: str | None
) -> None:
    """PASSWORD '...' in SQL (quoted, doubled quotes, E'', dollar-quoted, cut off),
    libpq's password=... and a URL's password are masked without being known."""
    from predeploy._util.redact import Scrubber  # noqa: PLC0415

    expected = masked or "alter user a with encrypted password '***' valid until 'x'"
    assert Scrubber().text(sql_text) == expected


def test_every_url_setting_gives_its_secrets(tmp_path: Path) -> None:
    """The settings know every secret: the database password, each notification URL's
    tokens (userinfo, path, query, a host that is a token), the health URL's password and
    query values, any other PREDEPLOY_* URL's password, PGPASSWORD; plain words, host names
    and ports are no secret."""
    from predeploy.config.settings import load_settings  # noqa: PLC0415

    environ = {
        "DATABASE_URL": "postgresql://app:DbPass1@db.example.com/app",
        "PREDEPLOY_NOTIFY_URLS": "json://hooks.example.com:8443/hook/JsonTok1?+X-Key=HdrTok1,"
        "slack://SlackA1/SlackB1/SlackC1/#ops,discord://998877/DiscTok1,"
        "tgram://123456:BotTok1/-1001,ntfy://NtfyTok1@ntfy.sh/alerts,"
        "jsons://hooks.example.com/deploy/staging",
        "PREDEPLOY_HEALTHCHECK_URL": "https://probe:HealthPw1@app.example.com/up?key=HKey1&v=1",
        "PREDEPLOY_DRIFT_EXPECTED": "s3://who:DriftPw1@bucket/x",
        "PGPASSWORD": "PgEnvPw1",
    }
    secrets = set(load_settings("staging", tmp_path, environ).secrets())
    wanted = {
        *("DbPass1", "JsonTok1", "HdrTok1", "SlackA1", "SlackB1", "SlackC1", "998877"),
        *("DiscTok1", "123456", "BotTok1", "-1001", "NtfyTok1", "HealthPw1", "HKey1"),
        *("DriftPw1", "PgEnvPw1"),
    }
    assert wanted <= secrets, wanted - secrets
    plain = {"hook", "hooks.example.com", "8443", "alerts", "ntfy.sh", "probe", "app", "json"}
    plain |= {"deploy", "staging"}
    assert not plain & secrets


def test_a_shown_url_masks_its_password_and_query_values() -> None:
    from predeploy._util.redact import shown_url  # noqa: PLC0415

    assert shown_url("http://u:p%40ss@[::1]:80/h?key=K1&flag&v=") == (
        "http://u:***@[::1]:80/h?key=***&***&v=***"
    )
    assert shown_url("https://app.example.com/health") == "https://app.example.com/health"
