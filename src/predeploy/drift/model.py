"""What a drift check finds: one Difference per object, and the words that describe it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from predeploy.drift.fingerprint import INFO_FIELDS

__all__ = [
    "ADDED",
    "CHANGED",
    "MISSING",
    "RENAMED",
    "Difference",
    "Objects",
    "compared",
    "describe",
]

ADDED, MISSING, CHANGED, RENAMED = "added by hand", "missing", "changed", "renamed"

Objects = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Difference:
    """One object that differs between the expected and the live schema."""

    kind: str
    name: str
    change: str
    expected: Mapping[str, Any] | None
    live: Mapping[str, Any] | None
    fields: tuple[str, ...] = ()  # for "changed": the fields that differ
    renamed_to: str | None = None  # for "renamed": the live name
    parts: tuple[Difference, ...] = ()  # an added or missing table's own objects

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "change": self.change,
            "expected": dict(self.expected) if self.expected is not None else None,
            "live": dict(self.live) if self.live is not None else None,
            "expected_text": describe(self.kind, self.expected, self.fields),
            "live_text": describe(self.kind, self.live, self.fields),
        }
        if self.fields:
            out["fields"] = list(self.fields)
        if self.renamed_to is not None:
            out["renamed_to"] = self.renamed_to
        if self.parts:
            out["parts"] = [part.as_dict() for part in self.parts]
        return out


def compared(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that count: without those recorded for information only."""
    info = INFO_FIELDS.get(kind, frozenset())
    return {k: v for k, v in fields.items() if k not in info}


def describe(kind: str, fields: Mapping[str, Any] | None, only: Iterable[str] = ()) -> str:
    """One line for an object (or, with ``only``, for those of its fields)."""
    if fields is None:
        return "-"
    chosen = tuple(only)
    if chosen:
        return "; ".join(f"{f}: {_value(fields.get(f))}" for f in chosen)
    special = _DESCRIBE.get(kind)
    if special is not None:
        return special(fields)
    if "definition" in fields:
        return _value(fields["definition"])
    shown = {k: v for k, v in fields.items() if v not in (None, False, [], "") and k != "table"}
    return ", ".join(f"{k} {_value(v)}" for k, v in sorted(shown.items())) or kind


def _column_text(fields: Mapping[str, Any]) -> str:
    text = str(fields.get("type"))
    if fields.get("collation"):
        text += f" COLLATE {fields['collation']}"
    if fields.get("identity"):
        text += f" GENERATED {fields['identity']} AS IDENTITY"
    if fields.get("generated"):
        text += f" {fields['generated']}"
    if fields.get("default") is not None:
        text += f" DEFAULT {fields['default']}"
    return text + (" NOT NULL" if fields.get("not_null") else "")


def _policy_text(fields: Mapping[str, Any]) -> str:
    text = "PERMISSIVE" if fields.get("permissive") else "RESTRICTIVE"
    text += f" FOR {fields.get('command')} TO {_value(fields.get('roles'))}"
    if fields.get("using") is not None:
        text += f" USING {fields['using']}"
    if fields.get("check") is not None:
        text += f" WITH CHECK {fields['check']}"
    return text


def _sequence_text(fields: Mapping[str, Any]) -> str:
    text = (
        f"AS {fields.get('type')} INCREMENT BY {fields.get('increment')} "
        f"START WITH {fields.get('start')} MINVALUE {fields.get('minimum')} "
        f"MAXVALUE {fields.get('maximum')} CACHE {fields.get('cache')}"
    )
    text += " CYCLE" if fields.get("cycle") else ""
    if fields.get("owned_by"):
        text += f" ({'identity of' if fields.get('identity') else 'owned by'} {fields['owned_by']})"
    return text


def _table_text(fields: Mapping[str, Any]) -> str:
    words = ["UNLOGGED table" if fields.get("persistence") == "unlogged" else "table"]
    if fields.get("partition_key"):
        words.append(f"PARTITION BY {fields['partition_key']}")
    if fields.get("partition_of"):
        words.append(f"PARTITION OF {fields['partition_of']} {fields.get('partition_bound')}")
    if fields.get("inherits"):
        words.append(f"INHERITS ({', '.join(fields['inherits'])})")
    if fields.get("row_security"):
        forced = "FORCE " if fields.get("force_row_security") else ""
        words.append(f"{forced}ROW LEVEL SECURITY")
    if fields.get("options"):
        words.append(f"WITH ({', '.join(fields['options'])})")
    if fields.get("replica_identity") not in (None, "default"):
        words.append(f"REPLICA IDENTITY {str(fields['replica_identity']).upper()}")
    return " ".join(words)


_DESCRIBE: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "table": _table_text,
    "sequence": _sequence_text,
    "column": _column_text,
    "comment": lambda f: _value(f.get("text")),
    "enum": lambda f: "labels: " + ", ".join(f.get("labels") or []),
    "policy": _policy_text,
    "index": lambda f: ("" if f.get("valid", True) else "INVALID ") + _value(f.get("definition")),
}


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    return " ".join(str(value).split())
