"""Prisma's URL query parameters, read as Prisma's engine (quaint) reads them.

Each parameter is validated the way Prisma validates it, then either handed to
libpq under its libpq meaning (``sslcert`` is Prisma's server CA, libpq's
``sslrootcert``; ``sslaccept=strict`` is libpq's ``verify-full``) or dropped.
Nothing here echoes a password: values are named, never shown, for ``password``
and ``sslpassword``. See FIELD-NOTES "Prisma URLs" for the measured table.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote

from predeploy.errors import ConfigError

__all__ = ["PRISMA_DEFAULT_CONNECT_TIMEOUT", "Query", "read_query"]

PRISMA_DEFAULT_CONNECT_TIMEOUT = 5
_INTEGERS = (
    "connection_limit",
    "pool_timeout",
    "statement_cache_size",
    "max_connection_lifetime",
    "max_idle_connection_lifetime",
    "socket_timeout",
)
_SSL_MODES = ("disable", "prefer", "require")
_TLS = ("sslmode", "sslaccept", "sslcert", "sslidentity", "sslpassword")
_IGNORED = {
    "port": "the port after the host",
    "user": "the user name before the @",
    "password": "the password before the @ (percent-encoded)",
    "dbname": "the database name in the path",
}
_WHOLE = re.compile(r"^\+?[0-9]{1,19}$")  # Rust's str::parse::<u64>


@dataclass
class Query:
    """What the query means: libpq parameters plus Prisma's own settings."""

    libpq: dict[str, str] = field(default_factory=dict)
    schema: str | None = None
    pgbouncer: bool = False
    connect_timeout: int | None = None
    warnings: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)


def read_query(
    query: str, variable: str, *, base_dir: Path | None, environ: Mapping[str, str]
) -> Query:
    """Read the query string of ``variable``'s URL; ConfigError where Prisma refuses it."""
    pairs = dict(parse_qsl(query, keep_blank_values=True))  # the last one wins, as in Prisma
    result = Query()
    for secret in ("password", "sslpassword"):
        if secret in pairs:
            result.secrets.extend(_secret_forms(query, secret, pairs[secret]))
    for name, value in pairs.items():
        handler = _HANDLERS.get(name)
        if handler is not None:
            handler(result, value, variable)
        elif name in _IGNORED:
            result.warnings.append(
                f"{variable}: Prisma ignores ?{name}= in the query, so predeploy does too: "
                f"write {_IGNORED[name]} instead"
            )
        elif name not in _TLS:
            result.warnings.append(_unknown(name, variable))
    _read_tls(result, pairs, variable, base_dir, environ)
    return result


def _secret_forms(query: str, name: str, decoded: str) -> list[str]:
    raw = [p.partition("=")[2] for p in query.split("&") if p.partition("=")[0] == name]
    return [decoded, quote(decoded, safe=""), *raw, *(unquote(r) for r in raw)]


def _unknown(name: str, variable: str) -> str:
    shown = name if len(name) <= 40 else name[:40] + "..."
    hint = ""
    if name in ("sslrootcert", "sslkey"):
        hint = " (Prisma's spelling of a CA file is sslcert=PATH with sslaccept=strict)"
    return f"{variable}: Prisma ignores ?{shown}=, so predeploy does too{hint}"


def _schema(result: Query, value: str, variable: str) -> None:
    if not value:
        raise ConfigError(f"{variable} has an empty ?schema=: name the schema or remove it")
    if len(value.encode()) > 63:
        raise ConfigError(
            f"{variable} has ?schema= longer than PostgreSQL's 63 bytes: use a shorter name"
        )
    result.schema = value


def _pgbouncer(result: Query, value: str, variable: str) -> None:
    if value not in ("true", "false"):
        raise ConfigError(
            f"{variable} has pgbouncer={value[:20]!r}: Prisma accepts only true or false"
        )
    result.pgbouncer = value == "true"


def _integer(name: str) -> Callable[[Query, str, str], None]:
    def check(result: Query, value: str, variable: str) -> None:
        if not _WHOLE.match(value):
            raise ConfigError(
                f"{variable} has {name}={value[:20]!r}: Prisma refuses it, it must be a whole "
                f"number (0 or more)"
            )

    return check


def _connect_timeout(result: Query, value: str, variable: str) -> None:
    if not _WHOLE.match(value):
        raise ConfigError(
            f"{variable} has connect_timeout={value[:20]!r}: it must be a whole number of "
            f"seconds (0 = no limit; Prisma's default is 5)"
        )
    result.connect_timeout = int(value)
    if result.connect_timeout == 1:
        result.warnings.append(
            f"{variable} has connect_timeout=1: libpq waits at least 2 s, so connections "
            f"wait up to 2 s"
        )


def _one_of(name: str, allowed: tuple[str, ...]) -> Callable[[Query, str, str], None]:
    def check(result: Query, value: str, variable: str) -> None:
        if value not in allowed:
            raise ConfigError(
                f"{variable} has {name}={value[:20]!r}: use one of {', '.join(allowed)}"
            )
        result.libpq[name] = value

    return check


def _passed(name: str) -> Callable[[Query, str, str], None]:
    def keep(result: Query, value: str, variable: str) -> None:
        result.libpq[name] = value

    return keep


def _host(result: Query, value: str, variable: str) -> None:
    if "," in value:
        raise ConfigError(_several_hosts(variable))
    if value:
        result.libpq["host"] = value


def _several_hosts(variable: str) -> str:
    return (
        f"{variable} names several hosts, which Prisma cannot read: give the primary "
        f"server's host alone (migrations and backups need the primary)"
    )


_HANDLERS: dict[str, Callable[[Query, str, str], None]] = {
    "schema": _schema,
    "pgbouncer": _pgbouncer,
    "connect_timeout": _connect_timeout,
    "host": _host,
    "application_name": _passed("application_name"),
    "options": _passed("options"),
    "channel_binding": _one_of("channel_binding", ("disable", "prefer", "require")),
    **{name: _integer(name) for name in _INTEGERS},
}


def _read_tls(
    result: Query,
    pairs: dict[str, str],
    variable: str,
    base_dir: Path | None,
    environ: Mapping[str, str],
) -> None:
    mode = pairs.get("sslmode")
    _check_ssl_mode(mode, variable)
    accept = pairs.get("sslaccept")
    strict = accept is not None and accept != "accept_invalid_certs"
    if accept not in (None, "strict", "accept_invalid_certs"):
        result.warnings.append(f"{variable}: Prisma reads sslaccept={accept[:20]!r} as strict")
    ca = _ca_file(pairs.get("sslcert"), variable, base_dir)
    _identity(result, pairs, variable, environ)
    if mode == "disable":
        result.libpq["sslmode"] = "disable"
    elif strict:
        result.libpq["sslmode"] = "verify-full"
        result.libpq["sslrootcert"] = str(ca) if ca is not None else _system_ca(variable)
    else:
        if mode is not None:
            result.libpq["sslmode"] = mode
        if ca is not None:
            result.warnings.append(
                f"{variable}: sslcert is used only with sslaccept=strict; without it Prisma "
                f"(and so predeploy) checks no certificate"
            )


def _check_ssl_mode(mode: str | None, variable: str) -> None:
    if mode is None or mode in _SSL_MODES:
        return
    if mode in ("verify-ca", "verify-full"):
        raise ConfigError(
            f"{variable} has sslmode={mode}, which Prisma reads as prefer (no certificate "
            f"check): write sslmode=require&sslaccept=strict (and sslcert=CA.pem for a "
            f"private CA) for checked TLS"
        )
    raise ConfigError(
        f"{variable} has sslmode={mode[:20]!r}, which Prisma reads as prefer: write "
        f"disable, prefer or require"
    )


def _ca_file(value: str | None, variable: str, base_dir: Path | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ConfigError(
            f"{variable} has sslcert={value}, but {path} is not a file (Prisma reads sslcert "
            f"as the server's CA certificate, relative to the schema file's folder): fix "
            f"the path"
        )
    return path


def _identity(
    result: Query, pairs: dict[str, str], variable: str, environ: Mapping[str, str]
) -> None:
    if "sslidentity" not in pairs:
        return
    if environ.get("PGSSLCERT") and environ.get("PGSSLKEY"):
        result.warnings.append(
            f"{variable}: sslidentity is replaced by PGSSLCERT and PGSSLKEY for predeploy"
        )
        return
    raise ConfigError(
        f"{variable} has sslidentity (a PKCS#12 client identity), which libpq cannot read: "
        f"convert it once with `openssl pkcs12 -in ID.p12 -clcerts -nokeys -out client.crt` "
        f"and `openssl pkcs12 -in ID.p12 -nocerts -nodes -out client.key` (chmod 600), "
        f"then export PGSSLCERT and PGSSLKEY naming them"
    )


def _system_ca(variable: str) -> str:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return candidate
    raise ConfigError(
        f"{variable} has sslaccept=strict, but this machine has no CA bundle to check the "
        f"server with: add sslcert=PATH naming the server's CA certificate"
    )
