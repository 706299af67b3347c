"""The fleet file, ``predeploy.fleet.toml``: the databases and schemas one run acts on.

    [fleet]
    concurrency = 4          # targets in flight at once (overall)
    per_server = 2           # ... and on one server (its tenants share its I/O)
    max_fail = 0             # failures before no new target starts: a count or "10%"
    groups = ["canary", "rest"]   # in order: a group starts once the one before succeeded

    [[targets]]
    name = "acme"
    group = "canary"
    database = "tenant_acme"     # a database on the env's own server, and/or
    schema = "acme"              # a schema (in the env's database, or in ``database``)
    # url_var = "ACME_DATABASE_URL"   # or: the variable that holds its URL

Instead of ``[[targets]]``, ``[fleet] query`` (SQL run on the env's database, one row per
target: name, database, schema, grp, url) or ``[fleet] command`` (a program whose stdout
is a JSON list of targets) may name them; the first of the three given wins. A file never
holds a URL: a password in a repository is a leak, so a target names the variable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predeploy.config.dburl import DatabaseUrl, parse_url
from predeploy.config.tables import FILE, TABLES, known, load, name_of, text, unique
from predeploy.errors import ConfigError

if TYPE_CHECKING:
    from predeploy.config.settings import Settings

__all__ = [
    "FILE",
    "Budget",
    "Fleet",
    "Member",
    "member_from",
    "parse_budget",
    "read_fleet",
    "settings_for",
]

_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TARGET_KEYS = {"name", "group", "database", "schema", "url_var"}
_FLEET_KEYS = {"concurrency", "per_server", "max_fail", "groups", "query", "command", "timeout"}
DEFAULT_GROUP = "default"


@dataclass(frozen=True)
class Budget:
    """How many failures a run takes before it starts no new target: ``count`` failures,
    or ``percent`` of the run's targets (rounded down)."""

    count: int = 0
    percent: float | None = None

    def allows(self, failures: int, total: int) -> bool:
        """True while ``failures`` (of ``total`` targets) are within the budget."""
        limit = self.count if self.percent is None else int(total * self.percent / 100)
        return failures <= limit

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


@dataclass(frozen=True)
class Member:
    """One target of a fleet: where it lives, by one of three ways. ``url`` comes only from
    a query or a command, never from the file (its password would sit in the repository)."""

    name: str
    group: str = DEFAULT_GROUP
    database: str | None = None
    schema: str | None = None
    url_var: str | None = None
    url: DatabaseUrl | None = field(default=None, repr=False, compare=False)
    confirmed: bool = False  # the fleet's confirmation was given for every target
    fleet_run: str | None = None  # the fleet run it is part of (None: `--target NAME` alone)


@dataclass(frozen=True)
class Fleet:
    """The fleet file as read: how to schedule, and the targets (or where to find them)."""

    path: Path
    concurrency: int = 4
    per_server: int | None = None
    max_fail: Budget = Budget()
    groups: tuple[str, ...] = ()
    query: str | None = None
    command: str | None = None
    timeout: float = 30.0  # the query's or the command's, in seconds
    targets: tuple[Member, ...] = ()

    @property
    def source(self) -> str:
        """Where the targets come from, in the order of precedence."""
        if self.targets:
            return f"{self.path.name} [[targets]]"
        return (
            f"{self.path.name} [fleet] query" if self.query else f"{self.path.name} [fleet] command"
        )

    def ordered(self, members: list[Member]) -> list[Member]:
        """``members`` by group, in ``groups``' order (the others after, as they come)."""
        rank = {g: i for i, g in enumerate(self.groups)}
        return sorted(members, key=lambda m: rank.get(m.group, len(rank)))


def read_fleet(root: Path) -> Fleet:
    """The fleet file at the project root; ConfigError (one line) when missing or bad."""
    path = root / FILE
    data = load(path)
    if data is None:
        raise ConfigError(
            f"--fleet needs {FILE} at the project root ({root}): list the targets there "
            f"(see the README's Fleets section)"
        )
    return _fleet(path, data)


def _fleet(path: Path, data: dict[str, Any]) -> Fleet:
    known(data, TABLES, FILE, "table")
    head = _table(data.get("fleet", {}), "[fleet]")
    known(head, _FLEET_KEYS, "[fleet]")
    groups = tuple(_strings(head.get("groups", []), "[fleet] groups"))
    targets = [_member(entry, i, groups) for i, entry in enumerate(_list(data.get("targets", [])))]
    unique([t.name for t in targets], "target")
    fleet = Fleet(
        path=path,
        concurrency=_positive(head.get("concurrency", 4), "[fleet] concurrency"),
        per_server=_positive(head["per_server"], "[fleet] per_server")
        if "per_server" in head
        else None,
        max_fail=parse_budget(head.get("max_fail", 0)),
        groups=groups,
        query=text(head.get("query"), "[fleet] query"),
        command=text(head.get("command"), "[fleet] command"),
        timeout=float(_positive(head.get("timeout", 30), "[fleet] timeout")),
        targets=tuple(targets),
    )
    if not (fleet.targets or fleet.query or fleet.command):
        raise ConfigError(
            f"{FILE} names no target: add [[targets]] entries, or [fleet] query (SQL on the "
            f"env's database) or [fleet] command (a program printing JSON)"
        )
    return fleet


def member_from(row: dict[str, Any], where: str, groups: tuple[str, ...]) -> Member:
    """A target from a query's row or a command's JSON object (``url`` allowed there: it
    lives in the control database or the program, not in the repository)."""
    url = row.get("url")
    known = {k: v for k, v in row.items() if k != "url" and v is not None}
    if "grp" in known:
        known["group"] = known.pop("grp")
    member = _member(known, None, groups, where=where)
    if url is None:
        return member
    if not isinstance(url, str):
        raise ConfigError(f"{where}: url must be a string")
    return replace(member, url=parse_url(url, f"the url of target {member.name}"))


def _member(entry: Any, index: int | None, groups: tuple[str, ...], where: str = "") -> Member:
    label = where or f"{FILE} [[targets]] #{(index or 0) + 1}"
    entry = _table(entry, label)
    if "url" in entry:
        raise ConfigError(
            f"{label}: a URL in {FILE} would put its password in the repository: put it in "
            f"an environment variable and name it with url_var"
        )
    known(entry, _TARGET_KEYS, label)
    name = name_of(entry, label)
    label = f"{FILE} target {name}" if not where else f"{where} ({name})"
    group = entry.get("group", groups[-1] if groups else DEFAULT_GROUP)
    if not isinstance(group, str) or (groups and group not in groups):
        raise ConfigError(f"{label}: group {group!r} is not one of [fleet] groups {list(groups)}")
    url_var = text(entry.get("url_var"), f"{label} url_var")
    if url_var is not None and not _VARIABLE.fullmatch(url_var):
        raise ConfigError(f"{label}: url_var must name an environment variable, got {url_var!r}")
    return Member(
        name=name,
        group=group,
        database=text(entry.get("database"), f"{label} database"),
        schema=text(entry.get("schema"), f"{label} schema"),
        url_var=url_var,
    )


def settings_for(settings: Settings, member: Member, server: DatabaseUrl | None) -> Settings:
    """The settings of one target: the env's, with the target's URLs (``server``: the env's
    direct URL, or the embedded server's when the env has none)."""
    direct, app = _urls(settings, member, server)
    return replace(
        settings,
        database_url=app,
        direct_database_url=direct if direct is not app else None,
        database_url_var=member.url_var or settings.database_url_var,
        member=member,
    )


def _urls(
    settings: Settings, member: Member, server: DatabaseUrl | None
) -> tuple[DatabaseUrl, DatabaseUrl]:
    """(direct, app) URLs of ``member``."""
    if member.url is not None or member.url_var is not None:
        url = member.url or _variable_url(settings, member)
        return (_placed(url, member),) * 2
    if server is None:
        raise ConfigError(f"target {member.name}: the env has no database URL to place it on")
    direct = _placed(server, member)
    app_base = settings.database_url if settings.direct_database_url is not None else None
    return direct, _placed(app_base, member) if app_base is not None else direct


def _placed(url: DatabaseUrl, member: Member) -> DatabaseUrl:
    placed = url.with_database(member.database) if member.database else url
    return replace(placed, schema=member.schema) if member.schema else placed


def _variable_url(settings: Settings, member: Member) -> DatabaseUrl:
    assert member.url_var is not None  # noqa: S101 (the caller's branch)
    raw = settings.variable(member.url_var)
    if raw is None:
        raise ConfigError(
            f"target {member.name}: {member.url_var} is not set (in the environment or the "
            f"env's .env files): set it to the target's database URL"
        )
    return parse_url(raw, member.url_var, default_connect_timeout=int(settings.connect_timeout))


def _table(value: Any, label: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{label} must be a table")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{FILE}: targets must be [[targets]] entries")
    return value


def _strings(value: Any, label: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f'{label} must be a list of names, as in ["canary", "rest"]')
    unique(value, label)
    return value


def _positive(value: Any, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{label} must be a whole number of at least 1, got {value!r}")
    return value


def parse_budget(value: Any, label: str = "[fleet] max_fail") -> Budget:
    """A failure budget: a count, or a percentage such as "10%"."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return Budget(count=value)
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?%", value.strip()):
        percent = float(value.strip()[:-1])
        if percent <= 100:
            return Budget(percent=percent)
    raise ConfigError(
        f"{label} must be a count (0: stop at the first failure) or a percentage "
        f'such as "10%", got {value!r}'
    )
