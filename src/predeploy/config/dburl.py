"""Database URLs that keep their password to themselves.

A ``DatabaseUrl`` is validated once, when settings are read. Its ``str`` and
``repr`` never contain the password; only ``connect_params()`` hands it out, to
psycopg in this process or to a child's environment, never to argv or a log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from predeploy.errors import ConfigError

__all__ = ["DatabaseUrl", "parse_url"]

_SCHEMES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed PostgreSQL URL; the raw text (with any password) is hidden."""

    params: dict[str, str] = field(repr=False, compare=False)
    raw: str = field(repr=False)

    @property
    def host(self) -> str:
        """The host, or the socket directory for a local socket (libpq's default)."""
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
        return self.params.get("password")

    @property
    def schema(self) -> str | None:
        """Prisma's `?schema=NAME`: the schema of migration sessions and the history table."""
        return None

    @property
    def is_socket(self) -> bool:
        return self.host.startswith("/")

    @property
    def address(self) -> str:
        """Where the server is, as an operator would name it: host:port or the socket."""
        if self.is_socket:
            return f"{self.host}/.s.PGSQL.{self.port}"
        return f"{self.host}:{self.port}"

    def connect_params(self) -> dict[str, str]:
        """The libpq parameters, password included: for psycopg only."""
        return dict(self.params)

    def with_database(self, dbname: str) -> DatabaseUrl:
        """The same server and credentials, another database."""
        return parse_url(_replace_path(self.raw, dbname), "DATABASE_URL")

    def redacted(self) -> str:
        user = self.user or ""
        secret = ":***" if self.password else ""
        at = "@" if user or secret else ""
        host = "" if self.is_socket else self.host
        port = f":{self.port}" if not self.is_socket and self.params.get("port") else ""
        query = f"?host={self.host}" if self.is_socket else ""
        return f"postgresql://{quote(user)}{secret}{at}{host}{port}/{self.database or ''}{query}"

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"DatabaseUrl({self.redacted()!r})"


def parse_url(raw: str, variable: str) -> DatabaseUrl:
    """Validate a PostgreSQL URL from setting ``variable``; ConfigError if malformed."""
    text = raw.strip()
    if not text.startswith(_SCHEMES):
        raise ConfigError(
            f"{variable} must be a URL starting with postgresql:// "
            f"(for example postgresql://app:PASSWORD@db.example.com:5432/app)"
        )
    try:
        params = conninfo_to_dict(text)
    except psycopg.ProgrammingError as exc:
        reason, password = str(exc), _raw_password(text)
        if password:
            reason = reason.replace(password, "***")
        raise ConfigError(f"{variable} is not a valid PostgreSQL URL: {reason}") from None
    port = params.get("port")
    if port is not None and not (str(port).isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"{variable} has an invalid port {port!r}: use a number from 1 to 65535")
    url = DatabaseUrl(params={k: str(v) for k, v in params.items()}, raw=text)
    if not url.database:
        raise ConfigError(f"{variable} names no database: add it after the host, as in {url}name")
    return url


def _raw_password(text: str) -> str:
    authority = text.split("://", 1)[1].split("/", 1)[0]
    return authority.rpartition("@")[0].partition(":")[2]


def _replace_path(raw: str, dbname: str) -> str:
    scheme, rest = raw.split("://", 1)
    authority, _, tail = rest.partition("/")
    query = tail.partition("?")[2]
    return f"{scheme}://{authority}/{quote(dbname)}" + (f"?{query}" if query else "")
