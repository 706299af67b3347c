"""Database URLs in Prisma's dialect that keep their password to themselves.

A ``DatabaseUrl`` is validated once, when settings are read, exactly as Prisma's
engine reads the URL (FIELD-NOTES "Prisma URLs"): ``schema=``, ``pgbouncer`` and
the pool parameters are Prisma's and never reach libpq; TLS parameters are
translated to their libpq meaning. Its ``str`` and ``repr`` never contain the
password; only ``connect_params()`` hands it out, to psycopg in this process or
to a child's passfile, never to argv or a log.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from predeploy._util.redact import MASK, Scrubber
from predeploy.config.urlquery import PRISMA_DEFAULT_CONNECT_TIMEOUT, Query, read_query
from predeploy.errors import ConfigError

__all__ = ["PRISMA_DEFAULT_CONNECT_TIMEOUT", "DatabaseUrl", "parse_url"]

_SCHEMES = ("postgresql://", "postgres://")
_ENCODE = (
    "percent-encode the password's special characters (/ as %2F, @ as %40, : as %3A, "
    "? as %3F, # as %23, % as %25) and any @ in the query (%40)"
)


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed PostgreSQL URL; the raw text (with any password) is hidden.

    ``params`` holds libpq parameters only (password and connect_timeout included);
    ``schema`` is Prisma's ``?schema=`` (None when absent: Prisma then means
    ``public``); ``warnings`` are one-line notes for the caller to log.
    """

    params: dict[str, str] = field(repr=False, compare=False)
    raw: str = field(repr=False)
    variable: str = "DATABASE_URL"
    schema: str | None = None
    pgbouncer: bool = False
    connect_timeout: int = PRISMA_DEFAULT_CONNECT_TIMEOUT
    warnings: tuple[str, ...] = field(default=(), compare=False)
    extra_secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def host(self) -> str:
        """The host name or address, or the socket folder (Prisma's default: localhost)."""
        return self.params.get("host") or "localhost"

    @property
    def port(self) -> int:
        return int(self.params.get("port") or 5432)

    @property
    def user(self) -> str | None:
        return self.params.get("user")

    @property
    def database(self) -> str | None:
        return self.params.get("dbname")

    @property
    def password(self) -> str | None:
        """The decoded password of the URL's authority."""
        return self.params.get("password")

    @property
    def is_socket(self) -> bool:
        return self.host.startswith("/")

    @property
    def effective_connect_timeout(self) -> int | None:
        """What a connection really waits, in seconds: libpq's floor is 2; None = no limit."""
        if self.connect_timeout == 0:
            return None
        return max(2, self.connect_timeout)

    @property
    def address(self) -> str:
        """Where the server is, as an operator would name it: host:port or the socket."""
        if self.is_socket:
            return f"{self.host}/.s.PGSQL.{self.port}"
        return f"{_bracketed(self.host)}:{self.port}"

    def secrets(self) -> tuple[str, ...]:
        """Every secret of this URL, decoded and percent-encoded, for log scrubbing."""
        found: list[str] = []
        if self.password:
            found += [self.password, quote(self.password, safe=""), _raw_password(self.raw)]
        found += self.extra_secrets
        return tuple(dict.fromkeys(s for s in found if s))

    def connect_params(self) -> dict[str, str]:
        """The libpq parameters, password included: for psycopg or a passfile only."""
        return dict(self.params)

    def with_database(self, dbname: str) -> DatabaseUrl:
        """The same server and credentials, another database."""
        return dataclasses.replace(
            self, params={**self.params, "dbname": dbname}, raw=_replace_path(self.raw, dbname)
        )

    def redacted(self) -> str:
        user = quote(self.user or "", safe="")
        secret = f":{MASK}" if self.password else ""
        at = "@" if user or secret else ""
        host = "" if self.is_socket else f"{_bracketed(self.host)}:{self.port}"
        query = [f"host={self.host}"] if self.is_socket else []
        query += [f"schema={quote(self.schema, safe='')}"] if self.schema is not None else []
        tail = f"?{'&'.join(query)}" if query else ""
        return f"postgresql://{user}{secret}{at}{host}/{quote(self.database or '')}{tail}"

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"DatabaseUrl({self.redacted()!r})"


def parse_url(
    raw: str,
    variable: str,
    *,
    base_dir: Path | None = None,
    default_connect_timeout: int = PRISMA_DEFAULT_CONNECT_TIMEOUT,
    environ: Mapping[str, str] | None = None,
) -> DatabaseUrl:
    """Read a PostgreSQL URL from setting ``variable`` in Prisma's dialect; ConfigError if bad.

    ``base_dir`` is where a relative ``sslcert`` is found (the schema file's folder);
    ``default_connect_timeout`` applies when the URL has no ``connect_timeout``.
    """
    text = raw.strip()
    _check_scheme(text, variable)
    authority, rest = _split(text, variable)
    path, _, query = rest.partition("?")
    params = _authority_params(authority, path, variable)
    meaning = read_query(
        query, variable, base_dir=base_dir, environ=os.environ if environ is None else environ
    )
    timeout = meaning.connect_timeout
    timeout = default_connect_timeout if timeout is None else timeout
    params = _libpq_params(params, meaning, timeout, variable)
    url = DatabaseUrl(
        params=params,
        raw=text,
        variable=variable,
        schema=meaning.schema,
        pgbouncer=meaning.pgbouncer,
        connect_timeout=timeout,
        warnings=tuple(meaning.warnings),
        extra_secrets=tuple(meaning.secrets),
    )
    if not url.database:
        raise ConfigError(f"{variable} names no database: add it after the host, as in {url}name")
    return url


def _libpq_params(
    authority: dict[str, str], meaning: Query, timeout: int, variable: str
) -> dict[str, str]:
    """The authority's parameters, the query's libpq ones, and Prisma's defaults."""
    params = {**authority, **meaning.libpq}
    if "host" not in params:  # Prisma's default, where libpq would use its socket
        params["host"] = "localhost"
        meaning.warnings.append(
            f"{variable} names no host: Prisma (and so predeploy) connects to localhost over "
            f"TCP; for the local socket add ?host=/var/run/postgresql"
        )
    params.setdefault("port", "5432")
    params["connect_timeout"] = str(timeout)
    return params


def _check_scheme(text: str, variable: str) -> None:
    if text.startswith("prisma+postgres://"):
        raise ConfigError(
            f"{variable} is a prisma+postgres:// URL (Prisma Accelerate or Prisma Postgres), "
            f"which only Prisma's client can use: give predeploy the database's own "
            f"postgresql:// URL as the direct URL (directUrl, DIRECT_URL)"
        )
    if not text.startswith(_SCHEMES):
        raise ConfigError(
            f"{variable} must be a URL starting with postgresql:// "
            f"(for example postgresql://app:PASSWORD@db.example.com:5432/app)"
        )


def _split(text: str, variable: str) -> tuple[str, str]:
    """(authority, path and query); an @ after the authority means an unencoded password."""
    authority, tail = _authority(text)
    if authority.count("@") > 1 or "@" in tail:
        raise ConfigError(
            f"{variable} has an @ where a URL cannot carry one (is there a / ? # or @ in "
            f"the password?): {_ENCODE}"
        )
    if "," in authority.rpartition("@")[2]:
        raise ConfigError(
            f"{variable} names several hosts, which Prisma cannot read: give the primary "
            f"server's host alone (migrations and backups need the primary)"
        )
    if tail.startswith("#"):
        raise ConfigError(f"{variable} has a # after the host: {_ENCODE}")
    return authority, tail


def _authority_params(authority: str, path: str, variable: str) -> dict[str, str]:
    """The user, password, host, port and database, decoded by libpq's own URI parser."""
    try:
        params = conninfo_to_dict(f"postgresql://{authority}{path}")
    except psycopg.ProgrammingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        userinfo = authority.rpartition("@")[0]
        secrets = [userinfo, userinfo.partition(":")[2]]
        reason = Scrubber([s for s in secrets if s], everywhere=True).text(reason)
        raise ConfigError(
            f"{variable} is not a valid PostgreSQL URL ({reason}): {_ENCODE}"
        ) from None
    port = params.get("port")
    if port is not None and not (str(port).isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"{variable} has an invalid port {port!r}: use a number from 1 to 65535")
    return {k: str(v) for k, v in params.items() if v is not None and str(v) != ""}


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _authority(text: str) -> tuple[str, str]:
    """The URL's authority (up to the first / ? or #) and what follows it."""
    rest = text.split("://", 1)[1]
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    end = min(ends, default=len(rest))
    return rest[:end], rest[end:]


def _raw_password(text: str) -> str:
    return _authority(text)[0].rpartition("@")[0].partition(":")[2]


def _replace_path(raw: str, dbname: str) -> str:
    scheme, rest = raw.split("://", 1)
    authority, _, tail = rest.partition("/")
    query = tail.partition("?")[2]
    return f"{scheme}://{authority}/{quote(dbname)}" + (f"?{query}" if query else "")
