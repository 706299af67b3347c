"""The catalogue fingerprint: every schema object of a database, keyed by name, never by OID.

Each object is ``{field: JSON value}``; two databases built by the same migrations
on the same major version have equal fingerprints. Owners and privileges are not part
of it: they depend on who built the database, not on its schema. This module is the
model (its kinds, narrowing to one schema, the saved JSON document); ``catalogue.take``
reads one from a server.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from predeploy.errors import ConfigError

__all__ = ["FORMAT", "INFO_FIELDS", "KINDS", "VERSION", "Fingerprint"]

FORMAT, VERSION = "predeploy-fingerprint", 1

# Every kind, in creation (dependency) order.
KINDS = (
    "schema",
    "extension",
    "collation",
    "enum",
    "domain",
    "composite type",
    "range type",
    "sequence",
    "function",
    "procedure",
    "aggregate",
    "table",
    "column",
    "constraint",
    "index",
    "statistics",
    "view",
    "materialized view",
    "trigger",
    "rule",
    "policy",
    "event trigger",
    "comment",
)

# Fields recorded for information (and for writing SQL) but never compared.
INFO_FIELDS: Mapping[str, frozenset[str]] = {
    "extension": frozenset({"version"}),
    "column": frozenset({"position", "inherited"}),
    "constraint": frozenset({"inherited"}),
    "index": frozenset({"attached_to"}),
}


@dataclass(frozen=True)
class Fingerprint:
    """A database's schema objects: ``objects[kind][name] = {field: value}``."""

    server_major: int
    server_version: str
    database: str
    objects: Mapping[str, Mapping[str, Mapping[str, Any]]]
    taken_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def extensions(self) -> dict[str, str]:
        """Every extension installed and its version."""
        return {
            name: str(fields.get("version"))
            for name, fields in self.objects.get("extension", {}).items()
        }

    def within(self, schema: str | None) -> Fingerprint:
        """Only the objects of ``schema`` (Prisma's ``?schema=``: one tenant of a database
        that holds others), without the schema itself (the tool creates it); all of them
        when ``schema`` is None."""
        if schema is None:
            return self
        kept = {
            kind: {
                name: fields
                for name, fields in named.items()
                if _schema_of(kind, name, fields) in (schema, None)
            }
            for kind, named in self.objects.items()
            if kind != "schema"
        }
        return dataclasses.replace(self, objects=kept)

    def count(self) -> int:
        """How many objects it holds."""
        return sum(len(named) for named in self.objects.values())

    def to_json(self) -> str:
        """The fingerprint as a versioned JSON document (what ``--save FILE`` writes)."""
        document = {
            "format": FORMAT,
            "version": VERSION,
            "server_major": self.server_major,
            "server_version": self.server_version,
            "database": self.database,
            "taken_at": self.taken_at,
            "extensions": self.extensions,
            "objects": self.objects,
        }
        return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "the fingerprint") -> Fingerprint:
        """Read what ``to_json`` wrote; ConfigError naming ``source`` when it is not one."""
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{source} is not JSON ({exc}): save it again with --save") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ConfigError(f"{source} is not a predeploy fingerprint: save one with --save")
        if document.get("version") != VERSION:
            raise ConfigError(
                f"{source} is fingerprint version {document.get('version')}, this predeploy "
                f"reads version {VERSION}: save it again with this predeploy (--save)"
            )
        return cls(
            server_major=int(document["server_major"]),
            server_version=str(document["server_version"]),
            database=str(document.get("database", "")),
            objects=document["objects"],
            taken_at=str(document.get("taken_at", "")),
        )


_ON_TABLE = frozenset({"constraint", "trigger", "rule", "policy"})  # "name on schema.table"
_SCHEMA_FIELD = frozenset({"extension", "function", "procedure", "aggregate"})


def _schema_of(kind: str, name: str, fields: Mapping[str, Any]) -> str | None:
    """The schema an object lives in; None for database-wide ones (event triggers)."""
    if kind == "event trigger":
        return None
    if kind in _SCHEMA_FIELD:
        return _leading_ident(str(fields.get("schema")))
    if kind == "comment":
        table = fields.get("table")
        if table:
            return _leading_ident(str(table))
        return _leading_ident(str(fields.get("identity", "")))
    if kind in _ON_TABLE:
        return _leading_ident(name.rsplit(" on ", 1)[-1])
    return _leading_ident(name)


def _leading_ident(qualified: str) -> str:
    """The first identifier of ``schema.name`` (as quote_ident wrote it), unquoted."""
    if not qualified.startswith('"'):
        return qualified.split(".", 1)[0]
    end = 1
    while end < len(qualified):
        if qualified[end] == '"' and qualified[end + 1 : end + 2] != '"':
            break
        end += 2 if qualified[end] == '"' else 1
    return qualified[1:end].replace('""', '"')
