"""A fleet's targets, from where the fleet file says, each with the settings of its run.

In the order of precedence: the file's ``[[targets]]``; ``[fleet] query``, run on the env's
database (its direct URL); ``[fleet] command``, a program run in the project root whose
stdout is a JSON list of targets. Every target's password joins the run's scrubber before
anything is logged about it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from predeploy._util.redact import Scrubber
from predeploy.config.dburl import DatabaseUrl
from predeploy.config.fleet import Fleet, Member, member_from, settings_for
from predeploy.config.settings import Settings
from predeploy.db import target as db_target
from predeploy.db.connect import catalog_session
from predeploy.db.failures import translated
from predeploy.errors import ConfigError
from predeploy.programs import run as programs

__all__ = ["Placed", "place", "select"]


@dataclass(frozen=True)
class Placed:
    """A target with the settings of its own run."""

    member: Member
    settings: Settings

    @property
    def name(self) -> str:
        return self.member.name

    @property
    def where(self) -> str:
        """database/schema, as an operator names it (no URL, no password)."""
        url = self.settings.migration_url
        base = url.database if url is not None else "(the embedded database)"
        return f"{base}/{self.member.schema}" if self.member.schema else str(base)

    @property
    def server(self) -> str:
        """host:port (the per-server concurrency cap counts by it)."""
        url = self.settings.migration_url
        return url.address if url is not None else "the embedded server"


def place(settings: Settings, fleet: Fleet, scrubber: Scrubber) -> list[Placed]:
    """Every target of ``fleet``, in group order, with its settings; its secrets masked
    from here on by ``scrubber`` (the run's)."""
    members = list(fleet.targets) or _found(settings, fleet)
    server = _server(settings, members)
    placed = []
    for member in fleet.ordered(members):
        own = settings_for(settings, member, server)
        scrubber.extend(own.secrets())
        placed.append(Placed(member, own))
    return placed


def select(
    placed: list[Placed],
    *,
    only: Sequence[str] = (),
    group: str | None = None,
    flag: str = "--only",
) -> list[Placed]:
    """The targets ``--only A,B`` and ``--group G`` name; ConfigError for an unknown one."""
    names = {p.name for p in placed}
    unknown = [n for n in only if n not in names]
    if unknown:
        raise ConfigError(
            f"{flag} {unknown[0]}: no such target in the fleet ({_some(sorted(names))})"
        )
    groups = {p.member.group for p in placed}
    if group is not None and group not in groups:
        raise ConfigError(f"--group {group}: no such group in the fleet ({_some(sorted(groups))})")
    return [
        p
        for p in placed
        if (not only or p.name in only) and (group is None or p.member.group == group)
    ]


def _some(names: list[str]) -> str:
    return ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")


def _server(settings: Settings, members: list[Member]) -> DatabaseUrl | None:
    """The env's direct URL, where targets without a URL of their own live (the embedded
    server's, started, when the env has none and a target needs it)."""
    if settings.migration_url is not None:
        return settings.migration_url
    if all(m.url is not None or m.url_var is not None for m in members):
        return None
    return db_target.of(settings).url


def _found(settings: Settings, fleet: Fleet) -> list[Member]:
    members = _queried(settings, fleet) if fleet.query else _listed(settings, fleet)
    if not members:
        raise ConfigError(f"{fleet.source} found no target: check it returns one row per target")
    names = [m.name for m in members]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise ConfigError(f"{fleet.source} names target {twice!r} twice: names must be unique")
    return members


def _queried(settings: Settings, fleet: Fleet) -> list[Member]:
    """One target per row of the query, run on the env's database (its direct URL)."""
    assert fleet.query is not None  # noqa: S101 (the caller's branch)
    target = db_target.of(settings)
    with (
        catalog_session(target.direct, purpose="fleet") as conn,
        translated(conn, "reading the fleet"),
    ):
        # SET takes no bind parameter ("syntax error at or near $1"): set_config does
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false)", (f"{int(fleet.timeout * 1000)}ms",)
        )
        cursor = conn.execute(fleet.query)
        if cursor.description is None:
            raise ConfigError("[fleet] query returns no rows: it must be a SELECT")
        columns = [c.name for c in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    if "name" not in columns:
        raise ConfigError(
            f"[fleet] query must return a name column (and database, schema, grp or url); "
            f"it returns {', '.join(columns)}"
        )
    return [
        member_from(row, f"[fleet] query row {i + 1}", fleet.groups) for i, row in enumerate(rows)
    ]


def _listed(settings: Settings, fleet: Fleet) -> list[Member]:
    """One target per object of the JSON list the command prints."""
    assert fleet.command is not None  # noqa: S101 (the caller's branch)
    words = shlex.split(fleet.command)
    # a path is the project root's (as the command runs there): Path("./x") drops "./"
    program = settings.root / words[0] if "/" in words[0] else None
    try:
        found = programs.output(
            program or _which(words[0]),
            words[1:],
            timeout=fleet.timeout,
            cwd=settings.root,
        )
    except programs.ProgramFailed as exc:
        raise ConfigError(f"[fleet] command failed: {exc}") from None
    try:
        rows = json.loads(found)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"[fleet] command did not print JSON: {exc}") from None
    if isinstance(rows, dict) and isinstance(rows.get("targets"), list):
        rows = rows["targets"]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ConfigError("[fleet] command must print a JSON list of objects (name, database, ...)")
    return [
        member_from(row, f"[fleet] command target {i + 1}", fleet.groups)
        for i, row in enumerate(rows)
    ]


def _which(name: str) -> Path:
    import shutil  # noqa: PLC0415 (command-listed fleets only)

    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"[fleet] command: {name} is not on PATH")
    return Path(found)
