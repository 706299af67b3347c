"""Which variables hold the database URLs, and their parsed values.

The URL (the app's, possibly through a pooler) and the direct URL (migrations,
locks, backups) are named, in order, by PREDEPLOY_URL_VAR / PREDEPLOY_DIRECT_URL_VAR,
then Prisma's files (Prisma 7's config ``datasource.url`` is the direct URL and wins
over the schema's ``directUrl``, since it is the one Prisma's CLI migrates with; the
schema's ``url`` is then read when set, never demanded; else the schema's ``url`` and
``directUrl``), then the conventions: DATABASE_URL, and DIRECT_URL or DIRECT_DATABASE_URL.
As in Prisma (P1012), a direct URL that is named but unset is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from predeploy.config.dburl import DatabaseUrl, parse_url
from predeploy.config.envfiles import EnvLayers
from predeploy.config.policy import embedded_stands_in
from predeploy.config.prisma import PrismaProject, UrlSource
from predeploy.config.values import variable_name
from predeploy.errors import ConfigError

__all__ = ["Databases", "read_databases"]

_DIRECT_NAMES = ("DIRECT_URL", "DIRECT_DATABASE_URL")


@dataclass(frozen=True)
class Databases:
    """The URLs of a run and the variables (or files) they came from."""

    database_url: DatabaseUrl | None
    database_url_var: str
    direct_database_url: DatabaseUrl | None
    direct_database_url_var: str | None
    shadow_database_url: DatabaseUrl | None
    shadow_database_url_var: str | None
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class _Reader:
    env: str
    layers: EnvLayers
    base_dir: Path | None
    timeout: int
    environ: Mapping[str, str]

    def value(self, source: UrlSource) -> tuple[str, str | None]:
        """The first of the source's variables that is set (its name and value), else
        its literal (named by where it is written)."""
        for name in source.variables:
            raw = self.layers.get(name)
            if raw is not None:
                return name, raw
        return source.where, source.literal or None

    def read(self, source: UrlSource | None) -> DatabaseUrl | None:
        if source is None:
            return None
        name, raw = self.value(source)
        if raw is None:
            return None
        return parse_url(
            raw,
            name,
            base_dir=self.base_dir,
            default_connect_timeout=self.timeout,
            environ=self.environ,
        )

    def files(self) -> str:
        return ", ".join(self.layers.labels) or "no .env files"

    def unread(self, prisma: PrismaProject) -> str:
        """Why a .env file that holds the variable perhaps was not read."""
        if not self.layers.skipped or prisma.config_file is None:
            return ""
        config = prisma.config_file.name
        return (
            f"; not read: {', '.join(self.layers.skipped)}, because {config} exists (Prisma "
            f"then reads no .env file: the config loads its own), so move the variable to "
            f".env or .env.{self.env}"
        )


def read_databases(
    env: str,
    layers: EnvLayers,
    prisma: PrismaProject,
    *,
    default_connect_timeout: int,
    environ: Mapping[str, str],
) -> Databases:
    """The URL, direct URL and shadow URL of ``env``; ConfigError when one must be set."""
    reader = _Reader(env, layers, prisma.schema_dir, default_connect_timeout, environ)
    url_source = _url_source(layers, prisma)
    direct_source = _direct_source(layers, prisma)
    url = reader.read(url_source)
    direct = reader.read(direct_source)
    development = embedded_stands_in(env)
    if direct_source is not None and direct is None and (url is not None or not development):
        raise ConfigError(_unset_direct(reader, direct_source, prisma))
    # with Prisma 7's config datasource.url, the schema's url is not what Prisma migrates
    # with: used when set, never demanded
    demanded = url_source.where != "default" and not (
        prisma.config_url is not None and url_source is prisma.url
    )
    if url is None and (demanded or direct is None) and not development:
        raise ConfigError(_unset_url(reader, url_source, prisma))
    url_var = url.variable if url is not None else (url_source.variable or url_source.where)
    if url is None and direct is not None:
        url, url_var = direct, direct.variable  # only a direct URL: it serves for both
    shadow_source = _shadow_source(layers, prisma)
    shadow = reader.read(shadow_source)
    warnings = _warnings(layers, url, direct, prisma, direct_source)
    return Databases(
        database_url=url,
        database_url_var=url_var,
        direct_database_url=direct,
        direct_database_url_var=direct.variable if direct is not None else None,
        shadow_database_url=shadow,
        shadow_database_url_var=shadow.variable if shadow is not None else None,
        warnings=warnings,
    )


def _url_source(layers: EnvLayers, prisma: PrismaProject) -> UrlSource:
    named = variable_name(layers.get("PREDEPLOY_URL_VAR"), "PREDEPLOY_URL_VAR")
    if named is not None:
        return UrlSource("PREDEPLOY_URL_VAR", variable=named)
    return prisma.url or UrlSource("default", variable="DATABASE_URL")


def _direct_source(layers: EnvLayers, prisma: PrismaProject) -> UrlSource | None:
    named = variable_name(layers.get("PREDEPLOY_DIRECT_URL_VAR"), "PREDEPLOY_DIRECT_URL_VAR")
    if named is not None:
        return UrlSource("PREDEPLOY_DIRECT_URL_VAR", variable=named)
    if prisma.unreadable is not None and layers.get("PREDEPLOY_URL_VAR") is None:
        raise ConfigError(
            f'{prisma.unreadable} is neither env("NAME") nor process.env.NAME, so predeploy '
            f"cannot tell which variable holds the database URL: set "
            f"PREDEPLOY_DIRECT_URL_VAR to that variable's name"
        )
    if prisma.config_url is not None:
        return prisma.config_url  # Prisma 7: the config's datasource.url wins over the schema
    if prisma.direct_url is not None:
        return prisma.direct_url
    if prisma.url is not None:
        return None  # the schema names only url: Prisma migrates with it
    found = [name for name in _DIRECT_NAMES if layers.get(name)]
    return UrlSource("default", variable=found[0]) if found else None


def _shadow_source(layers: EnvLayers, prisma: PrismaProject) -> UrlSource | None:
    if layers.get("PREDEPLOY_SHADOW_DATABASE_URL"):
        return UrlSource("PREDEPLOY_SHADOW_DATABASE_URL", variable="PREDEPLOY_SHADOW_DATABASE_URL")
    return prisma.shadow_url


def _unset_direct(reader: _Reader, source: UrlSource, prisma: PrismaProject) -> str:
    where = f"{source.where} names it" if source.where != "default" else "it is the direct URL"
    name = source.variable or "it"
    return (
        f"{_unset(source)} for env {reader.env!r}, but {where} (Prisma stops "
        f"here too, P1012; read: {reader.files()}, and the process environment"
        f"{reader.unread(prisma)}): set {name} in .env.{reader.env} or export it"
    )


def _unset_url(reader: _Reader, source: UrlSource, prisma: PrismaProject) -> str:
    named = f"; {source.where} names it" if source.where != "default" else ""
    name = source.variable or "it"
    return (
        f"{_unset(source)} for env {reader.env!r} (read: {reader.files()}, and "
        f"the process environment{named}{reader.unread(prisma)}): set {name} in "
        f".env.{reader.env} or export it"
    )


def _unset(source: UrlSource) -> str:
    """``A is not set``, or ``none of A, B is set`` for a ``??`` chain."""
    if not source.variables:
        return f"{source.where} is an empty URL"
    if len(source.variables) == 1:
        return f"{source.variables[0]} is not set"
    return f"none of {', '.join(source.variables)} is set"


def _warnings(
    layers: EnvLayers,
    url: DatabaseUrl | None,
    direct: DatabaseUrl | None,
    prisma: PrismaProject,
    direct_source: UrlSource | None,
) -> tuple[str, ...]:
    notes = list(prisma.warnings)
    for parsed in dict.fromkeys(u for u in (url, direct) if u is not None):
        notes += parsed.warnings
    migration = direct or url
    if migration is not None and migration.pgbouncer:
        notes.append(
            f"{migration.variable} has pgbouncer=true: migrations and their advisory lock "
            f"need a session, so give predeploy the direct server URL (directUrl, DIRECT_URL)"
        )
    both = [layers.get(name) for name in _DIRECT_NAMES]
    defaulted = direct_source is not None and direct_source.where == "default"
    if defaulted and all(both) and both[0] != both[1]:
        notes.append("DIRECT_URL and DIRECT_DATABASE_URL differ: predeploy uses DIRECT_URL")
    return tuple(notes)
