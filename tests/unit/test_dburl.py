"""Database URLs in Prisma's dialect: each parameter, each refusal, and secrecy."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from predeploy.config.dburl import DatabaseUrl, parse_url
from predeploy.errors import ConfigError

BASE = "postgresql://app:s3cr3t@db.example.com:5432/app"
PRISMA_ONLY = ("schema", "pgbouncer", "sslaccept", "sslidentity", "sslpassword", "sslcert")


def parse(query: str = "", **kwargs: object) -> DatabaseUrl:
    raw = f"{BASE}?{query}" if query else BASE
    return parse_url(raw, "DATABASE_URL", environ={}, **kwargs)  # type: ignore[arg-type]


def refused(raw: str, variable: str = "DATABASE_URL") -> ConfigError:
    with pytest.raises(ConfigError) as err:
        parse_url(raw, variable, environ={})
    assert err.value.exit_code == 2
    assert "\n" not in err.value.message
    return err.value


def test_schema_is_read_and_never_reaches_libpq() -> None:
    """?schema=NAME is DatabaseUrl.schema, stripped from the libpq parameters."""
    url = parse("schema=My%20App")
    assert url.schema == "My App"
    assert "schema" not in url.connect_params()
    assert parse().schema is None


@pytest.mark.parametrize("query", ["schema=", f"schema={'x' * 64}"])
def test_empty_or_overlong_schema_is_refused(query: str) -> None:
    """An empty schema name, or one longer than 63 bytes, is exit 2."""
    assert "schema" in refused(f"{BASE}?{query}").message


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False)])
def test_pgbouncer_is_a_boolean_and_stripped(value: str, expected: bool) -> None:
    """pgbouncer=true/false is DatabaseUrl.pgbouncer and never reaches libpq."""
    url = parse(f"pgbouncer={value}")
    assert url.pgbouncer is expected
    assert "pgbouncer" not in url.connect_params()


@pytest.mark.parametrize("value", ["1", "yes", "TRUE", ""])
def test_pgbouncer_other_than_true_or_false_is_refused(value: str) -> None:
    """Prisma accepts only true or false for pgbouncer."""
    assert "pgbouncer" in refused(f"{BASE}?pgbouncer={value}").message


@pytest.mark.parametrize(
    "name",
    [
        "connection_limit",
        "pool_timeout",
        "statement_cache_size",
        "max_connection_lifetime",
        "max_idle_connection_lifetime",
        "socket_timeout",
    ],
)
def test_pool_parameters_are_whole_numbers_and_dropped(name: str) -> None:
    """Prisma's pool parameters: whole numbers are dropped, anything else is exit 2."""
    url = parse(f"{name}=10")
    assert name not in url.connect_params()
    assert url.warnings == ()
    for bad in ("ten", "-1", "1.5", ""):
        message = refused(f"{BASE}?{name}={bad}").message
        assert name in message
        assert "whole number" in message


def test_connect_timeout_defaults_to_prismas_five_seconds() -> None:
    """Without connect_timeout, libpq gets Prisma's default 5 (or the caller's default)."""
    assert parse().connect_params()["connect_timeout"] == "5"
    assert parse().connect_timeout == 5
    assert parse(default_connect_timeout=9).connect_params()["connect_timeout"] == "9"


def test_connect_timeout_in_the_url_wins_and_reports_what_libpq_waits() -> None:
    """connect_timeout=N is passed; 0 means no limit; 1 really waits 2 s and says so."""
    url = parse("connect_timeout=30", default_connect_timeout=9)
    assert (url.connect_timeout, url.effective_connect_timeout) == (30, 30)
    assert url.connect_params()["connect_timeout"] == "30"
    assert parse("connect_timeout=0").effective_connect_timeout is None
    short = parse("connect_timeout=1")
    assert short.effective_connect_timeout == 2
    assert any("2 s" in w for w in short.warnings)


@pytest.mark.parametrize("value", ["abc", "1.5", "5s", "-3", ""])
def test_bad_connect_timeout_is_a_configuration_error(value: str) -> None:
    """A bad connect_timeout is exit 2 when settings are read, not a failure at backup time."""
    assert "connect_timeout" in refused(f"{BASE}?connect_timeout={value}").message


@pytest.mark.parametrize("mode", ["disable", "prefer", "require"])
def test_prisma_ssl_modes_pass_to_libpq(mode: str) -> None:
    """sslmode disable, prefer and require mean the same to Prisma and libpq."""
    assert parse(f"sslmode={mode}").connect_params()["sslmode"] == mode


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_verify_modes_are_refused_with_prismas_spelling(mode: str) -> None:
    """verify-ca/full mean prefer to Prisma: exit 2 saying to write sslaccept=strict."""
    message = refused(f"{BASE}?sslmode={mode}").message
    assert "prefer" in message
    assert "sslaccept=strict" in message


def test_unknown_ssl_mode_is_refused() -> None:
    """Any other sslmode is exit 2 naming the three Prisma knows."""
    assert "disable, prefer or require" in refused(f"{BASE}?sslmode=allow").message


def test_strict_sslaccept_is_verify_full_against_the_system_cas() -> None:
    """sslaccept=strict is libpq's verify-full; without sslcert, the system CA bundle."""
    params = parse("sslaccept=strict").connect_params()
    assert params["sslmode"] == "verify-full"
    paths = ssl.get_default_verify_paths()
    assert params["sslrootcert"] in (paths.cafile, paths.openssl_cafile)
    assert "sslaccept" not in params


def test_sslcert_is_the_server_ca_relative_to_the_schema_folder(tmp_path: Path) -> None:
    """Prisma's sslcert (the server CA, relative to the schema's folder) is sslrootcert."""
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    params = parse("sslaccept=strict&sslcert=ca.pem&sslmode=require", base_dir=tmp_path)
    assert params.connect_params()["sslrootcert"] == str(tmp_path / "ca.pem")
    assert params.connect_params()["sslmode"] == "verify-full"
    assert "sslcert" not in params.connect_params()


def test_missing_sslcert_file_is_named(tmp_path: Path) -> None:
    """An sslcert that is not a file is exit 2 naming the path looked at."""
    with pytest.raises(ConfigError, match=rf"{tmp_path}/nope\.pem is not a file"):
        parse("sslaccept=strict&sslcert=nope.pem", base_dir=tmp_path)


def test_accept_invalid_certs_checks_nothing_and_says_sslcert_is_unused(tmp_path: Path) -> None:
    """Without strict, no certificate is checked (as in Prisma); an sslcert is noted, unused."""
    (tmp_path / "ca.pem").write_text("x")
    url = parse("sslmode=require&sslaccept=accept_invalid_certs&sslcert=ca.pem", base_dir=tmp_path)
    params = url.connect_params()
    assert params["sslmode"] == "require"
    assert "sslrootcert" not in params
    assert "sslcert" not in params
    assert any("sslaccept=strict" in w for w in url.warnings)


def test_strict_with_tls_disabled_stays_disabled() -> None:
    """sslmode=disable wins over sslaccept=strict: no TLS at all, as in Prisma."""
    params = parse("sslmode=disable&sslaccept=strict").connect_params()
    assert params["sslmode"] == "disable"
    assert "sslrootcert" not in params


def test_sslidentity_is_refused_with_what_to_do() -> None:
    """A PKCS#12 identity is refused in one line saying how to convert it, password unseen."""
    message = refused(f"{BASE}?sslidentity=id.p12&sslpassword=p12pass").message
    assert "openssl pkcs12" in message
    assert "PGSSLCERT" in message
    assert "p12pass" not in message


def test_sslidentity_gives_way_to_pgsslcert_and_pgsslkey() -> None:
    """With PGSSLCERT and PGSSLKEY exported, sslidentity is dropped with a note."""
    url = parse_url(
        f"{BASE}?sslidentity=id.p12&sslpassword=p12pass",
        "DATABASE_URL",
        environ={"PGSSLCERT": "/c.crt", "PGSSLKEY": "/c.key"},
    )
    params = url.connect_params()
    assert not {"sslidentity", "sslpassword"} & set(params)
    assert "p12pass" in url.secrets()
    assert all("p12pass" not in w for w in url.warnings)


def test_libpq_parameters_pass_through() -> None:
    """application_name, options, channel_binding and the query host reach libpq decoded."""
    url = parse_url(
        "postgresql://app@/app?host=%2Fvar%2Frun%2Fpostgresql&application_name=web+1"
        "&options=-c%20statement_timeout%3D5s&channel_binding=require",
        "DATABASE_URL",
        environ={},
    )
    params = url.connect_params()
    assert params["host"] == "/var/run/postgresql"
    assert params["application_name"] == "web 1"  # Prisma reads the query as a form: + is space
    assert params["options"] == "-c statement_timeout=5s"
    assert params["channel_binding"] == "require"
    assert url.is_socket
    assert url.address == "/var/run/postgresql/.s.PGSQL.5432"


def test_bad_channel_binding_is_refused() -> None:
    """channel_binding takes disable, prefer or require."""
    assert "channel_binding" in refused(f"{BASE}?channel_binding=maybe").message


def test_prisma_defaults_replace_libpqs_environment_defaults() -> None:
    """No host means localhost:5432 over TCP, as in Prisma, not PGHOST or the socket."""
    url = parse_url("postgresql://app@/app", "DATABASE_URL", environ={})
    params = url.connect_params()
    assert (params["host"], params["port"]) == ("localhost", "5432")
    assert any("?host=/var/run/postgresql" in w for w in url.warnings)


@pytest.mark.parametrize("name", ["port", "user", "password", "dbname"])
def test_query_credentials_are_ignored_with_a_warning(name: str) -> None:
    """Prisma ignores port/user/password/dbname in the query: dropped, warned, never echoed."""
    url = parse(f"{name}=Hidden99")
    params = url.connect_params()
    assert "Hidden99" not in params.values()
    assert (params["port"], params["user"], params["dbname"]) == ("5432", "app", "app")
    assert params["password"] == "s3cr3t"
    assert len(url.warnings) == 1
    assert f"?{name}=" in url.warnings[0]
    assert "Hidden99" not in url.warnings[0]
    if name == "password":
        assert "Hidden99" in url.secrets()


def test_unknown_parameters_are_dropped_with_a_warning() -> None:
    """A parameter Prisma discards (sslrootcert, a typo) is dropped and named in a warning."""
    url = parse("sslrootcert=/ca.pem&shema=app")
    assert not {"sslrootcert", "shema"} & set(url.connect_params())
    assert any("?sslrootcert=" in w and "sslcert" in w for w in url.warnings)
    assert any("?shema=" in w for w in url.warnings)


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql://app:pw@h1:5432,h2:5432/app",
        "postgresql://app:pw@h1,h2/app",
        "postgresql://app:pw@/app?host=h1,h2",
    ],
)
def test_multi_host_urls_are_refused(raw: str) -> None:
    """Prisma cannot read several hosts: exit 2 asking for the primary alone."""
    assert "several hosts" in refused(raw).message


def test_prisma_postgres_urls_are_refused_with_an_explanation() -> None:
    """prisma+postgres:// is Accelerate's: exit 2 asking for the direct postgresql:// URL."""
    message = refused("prisma+postgres://accelerate.prisma-data.net/?api_key=eyJhbGci").message
    assert "direct" in message
    assert "eyJhbGci" not in message


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        ("postgresql://app:Secr3tPart/OtherHalf@host/db", ("Secr3t", "OtherHalf", "Part")),
        ("postgresql://app:Secr3t@Other@host/db", ("Secr3t", "Other")),
        ("postgresql://app:Secr3t?Other@host/db", ("Secr3t", "Other")),
        ("postgresql://app:Secr3t#Other@host/db", ("Secr3t", "Other")),
        ("postgresql://app:Secr3t%zzOther@host/db", ("Secr3t", "Other")),
        ("postgresql://app:Sec/r3t=Oth@host/db?x=1", ("Sec", "r3t", "Oth")),
    ],
)
def test_unencoded_password_is_never_echoed(raw: str, fragments: tuple[str, ...]) -> None:
    """A password with unencoded / @ ? # % fails naming how to encode, showing none of it."""
    message = refused(raw).message
    for fragment in fragments:
        assert fragment not in message
    assert "%2F" in message
    assert "%40" in message


def test_ipv6_hosts_are_shown_in_brackets() -> None:
    """An IPv6 host is shown [::1]:5432, the way an operator writes it."""
    url = parse_url("postgresql://app:pw@[::1]:5432/app", "DATABASE_URL", environ={})
    assert url.host == "::1"
    assert url.address == "[::1]:5432"
    assert str(url) == "postgresql://app:***@[::1]:5432/app"


def test_display_never_shows_the_password() -> None:
    """str, repr and redacted() hide the password; the schema is shown."""
    url = parse_url("postgresql://app:p%2Fq%40z@db:5432/app?schema=app", "DATABASE_URL", environ={})
    for text in (str(url), repr(url), url.redacted()):
        assert "p/q@z" not in text
        assert "p%2Fq" not in text
    assert url.redacted() == "postgresql://app:***@db:5432/app?schema=app"
    assert url.password == "p/q@z"


def test_secrets_hold_the_password_decoded_and_percent_encoded() -> None:
    """secrets() gives both forms, so that log scrubbing catches either."""
    url = parse_url("postgresql://app:p%2fq@db/app", "DATABASE_URL", environ={})
    assert set(url.secrets()) >= {"p/q", "p%2fq", "p%2Fq"}


def test_with_database_keeps_the_prisma_meaning() -> None:
    """Another database on the same server keeps the schema, TLS and credentials."""
    url = parse("schema=app&sslmode=require").with_database("other")
    assert url.database == "other"
    assert (url.schema, url.connect_params()["sslmode"]) == ("app", "require")
    assert url.password == "s3cr3t"


def test_the_variable_is_recorded() -> None:
    """A URL knows which variable it came from, for messages."""
    assert parse_url(BASE, "DIRECT_URL", environ={}).variable == "DIRECT_URL"
