"""A backup's manifest, typed: the JSON file beside each dump that says what it holds.

``Manifest.from_json`` reads any manifest predeploy wrote (older ones lack some fields:
they read as None; without ``schema``, a dump of the whole database); ``as_json`` is the
file's shape. Keys a newer predeploy added are kept as they are (``extra``), so rewriting
a manifest (a later check) never loses them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Manifest", "PgDump", "TableEntry"]


@dataclass(frozen=True)
class PgDump:
    """The pg_dump that made the dump: a restore needs a pg_restore at least that new."""

    path: str
    version: str
    major: int

    @classmethod
    def from_json(cls, data: Any) -> PgDump | None:
        if not isinstance(data, Mapping):
            return None
        return cls(str(data.get("path", "")), str(data.get("version")), int(data.get("major", 0)))


@dataclass(frozen=True)
class TableEntry:
    schema: str
    name: str
    rows_estimate: int


@dataclass(frozen=True)
class Manifest:
    file: str  # the dump's name, beside the manifest
    created_at: datetime
    format: str = "custom"  # or "directory"
    sha256: str | None = None
    size: int | None = None
    checked_at: str | None = None
    seconds: float | None = None
    env: str | None = None
    reason: str | None = None
    database: str | None = None
    schema: str | None = None  # a schema's dump (a tenant's); None: the whole database
    server_version: str | None = None
    system_identifier: str | None = None
    pg_dump: PgDump | None = None
    latest_migration: str | None = None
    applied_migrations: int | None = None
    tables: tuple[TableEntry, ...] = ()
    verified: bool = False
    restore_command: str | None = None
    check: str | None = None  # a later check's result: "ok", "MISMATCH" or "missing"
    predeploy_version: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """The manifest in ``data`` (parsed JSON); ValueError, KeyError or TypeError when
        it is not one (no file name or creation time)."""
        if not isinstance(data, Mapping):
            raise TypeError("a manifest is a JSON object")
        known = {f.name for f in dataclasses.fields(cls)} | {"migrations"}
        migrations = data.get("migrations") or {}
        return cls(
            file=str(data["file"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            format=str(data.get("format") or "custom"),
            sha256=data.get("sha256"),
            size=data.get("size"),
            checked_at=data.get("checked_at"),
            seconds=data.get("seconds"),
            env=data.get("env"),
            reason=data.get("reason"),
            database=data.get("database"),
            schema=data.get("schema"),
            server_version=data.get("server_version"),
            system_identifier=data.get("system_identifier"),
            pg_dump=PgDump.from_json(data.get("pg_dump")),
            latest_migration=migrations.get("latest"),
            applied_migrations=migrations.get("applied"),
            tables=tuple(
                TableEntry(str(t["schema"]), str(t["name"]), int(t["rows_estimate"]))
                for t in data.get("tables") or ()
            ),
            verified=bool(data.get("verified")),
            restore_command=data.get("restore_command"),
            check=data.get("check"),
            predeploy_version=data.get("predeploy_version"),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def as_json(self) -> dict[str, Any]:
        """The manifest file's content."""
        data: dict[str, Any] = {
            "predeploy_version": self.predeploy_version,
            "file": self.file,
            "format": self.format,
            "sha256": self.sha256,
            "size": self.size,
            "created_at": self.created_at.isoformat(),
            "checked_at": self.checked_at,
            "seconds": self.seconds,
            "env": self.env,
            "reason": self.reason,
            "database": self.database,
            "server_version": self.server_version,
            "system_identifier": self.system_identifier,
            "pg_dump": dataclasses.asdict(self.pg_dump) if self.pg_dump else None,
            "migrations": {"latest": self.latest_migration, "applied": self.applied_migrations},
            "tables": [dataclasses.asdict(t) for t in self.tables],
            "verified": self.verified,
            "restore_command": self.restore_command,
        }
        if self.schema is not None:  # a schema's dump; without the key: the whole database's
            data["schema"] = self.schema
        if self.check is not None:
            data["check"] = self.check
        return data | dict(self.extra)
