"""Drift: what changed in the live schema behind the migrations' back.

``compare`` is pure: two fingerprints in, a list of differences out. An object is
"added by hand" (live only), "missing" (expected only), "changed" (both, with the
fields that differ) or "renamed" (a missing and an added object of the same kind
that are otherwise equal; for tables and columns, whatever named them follows).
The columns, constraints, indexes, triggers, policies and comments of a table that
is itself added or missing travel inside that table's difference as its ``parts``.

``detect`` fingerprints the live database and compares; ``render`` is the table an
operator reads. Drift never changes a database: the SQL to revert or adopt a
difference is text (``revert_sql`` / ``adopt_sql``, from predeploy.migrate.reconcile).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from predeploy.errors import ConfigError
from predeploy.migrate import fingerprint
from predeploy.migrate.fingerprint import INFO_FIELDS, KINDS, Fingerprint
from predeploy.migrate.reconcile import adopt_sql, revert_sql
from predeploy.postgres.sessions import Conn

__all__ = [
    "ADDED",
    "CHANGED",
    "MISSING",
    "RENAMED",
    "Difference",
    "DriftReport",
    "adopt_sql",
    "compare",
    "describe",
    "detect",
    "render",
    "revert_sql",
]

ADDED, MISSING, CHANGED, RENAMED = "added by hand", "missing", "changed", "renamed"

Objects = dict[str, dict[str, dict[str, Any]]]

# Kinds that belong to one table: they follow its renames and fold into its difference.
_CHILDREN = ("column", "constraint", "index", "statistics", "trigger", "rule", "policy")
_FOLDED = (*_CHILDREN, "sequence", "comment")
# Kinds whose renames are paired; the rest show as missing + added.
_RENAMEABLE = (
    *_CHILDREN,
    "sequence",
    "view",
    "materialized view",
    "enum",
    "domain",
    "composite type",
    "range type",
    "function",
    "procedure",
    "aggregate",
)
_IDENTITY_FIELDS = frozenset({"name", "identity"})
_WIDTH = 48


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


@dataclass(frozen=True)
class DriftReport:
    """The outcome of one drift check."""

    differences: tuple[Difference, ...]
    expected_from: str  # where the expected schema came from (a shadow, a file)
    database: str
    server_version: str
    compared: int  # objects in the live fingerprint
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def drifted(self) -> bool:
        return bool(self.differences)

    def as_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "database": self.database,
            "server_version": self.server_version,
            "expected_from": self.expected_from,
            "compared": self.compared,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
            "differences": [d.as_dict() for d in self.differences],
        }


def detect(
    live_conn: Conn,
    *,
    expected: Fingerprint,
    exclude: Iterable[tuple[str, str]],
    expected_from: str = "the expected fingerprint",
) -> DriftReport:
    """Fingerprint ``live_conn``'s database and compare it with ``expected``.

    ConfigError when ``expected`` was taken on another major version: their deparsed
    definitions differ in ways that are not drift.
    """
    started = time.perf_counter()
    live = fingerprint.take(live_conn, exclude=exclude)
    if live.server_major != expected.server_major:
        raise ConfigError(
            f"{expected_from} was taken on PostgreSQL {expected.server_major}, the live server "
            f"is {live.server_major}: build it on a PostgreSQL {live.server_major} server"
        )
    return DriftReport(
        differences=tuple(compare(expected, live)),
        expected_from=expected_from,
        database=live.database,
        server_version=live.server_version,
        compared=live.count(),
        notes=tuple(_notes(expected, live)),
        seconds=time.perf_counter() - started,
    )


def compare(expected: Fingerprint, live: Fingerprint) -> list[Difference]:
    """Every difference between ``expected`` and ``live``, in dependency order of kinds."""
    want = _copy(expected.objects)
    have = _copy(live.objects)
    renames = _pair_tables(want, have)
    renames += _pair_columns(want, have)
    for kind in _RENAMEABLE:
        if kind != "column":
            renames += _pair_kind(want, have, kind)
    plain = [d for kind in KINDS for d in _diff_kind(kind, want.get(kind, {}), have.get(kind, {}))]
    return _order(renames + _fold(plain))


def _copy(objects: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> Objects:
    return {
        kind: {name: dict(fields) for name, fields in named.items()}
        for kind, named in objects.items()
    }


def _compared(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    info = INFO_FIELDS.get(kind, frozenset())
    return {k: v for k, v in fields.items() if k not in info}


def _diff_kind(
    kind: str, want: Mapping[str, dict[str, Any]], have: Mapping[str, dict[str, Any]]
) -> list[Difference]:
    out = []
    for name in sorted(want.keys() | have.keys()):
        w, h = want.get(name), have.get(name)
        if h is None:
            out.append(Difference(kind, name, MISSING, w, None))
        elif w is None:
            out.append(Difference(kind, name, ADDED, None, h))
        else:
            cw, ch = _compared(kind, w), _compared(kind, h)
            fields = tuple(sorted(k for k in cw.keys() | ch.keys() if cw.get(k) != ch.get(k)))
            if fields:
                out.append(Difference(kind, name, CHANGED, w, h, fields=fields))
    return out


# --- renames --------------------------------------------------------------------------


def _signature(kind: str, fields: Mapping[str, Any]) -> str:
    """The fields that say what an object is, without what names it."""
    name = fields.get("name")
    kept = {k: v for k, v in _compared(kind, fields).items() if k not in _IDENTITY_FIELDS}
    definition = kept.get("definition")
    if isinstance(name, str) and isinstance(definition, str):
        if "schema" in fields:  # a function's definition names it qualified
            kept["definition"] = definition.replace(f"{fields['schema']}.{name}(", "\x00(", 1)
        else:
            kept["definition"] = _replace_token(definition, name, "\x00")
    return json.dumps(kept, sort_keys=True)


def _unique_pairs(missing: Mapping[str, str], added: Mapping[str, str]) -> list[tuple[str, str]]:
    """(missing, added) names whose signatures match one to one."""
    by_sig: dict[str, tuple[list[str], list[str]]] = {}
    for name, sig in missing.items():
        by_sig.setdefault(sig, ([], []))[0].append(name)
    for name, sig in added.items():
        by_sig.setdefault(sig, ([], []))[1].append(name)
    return [(m[0], a[0]) for m, a in by_sig.values() if len(m) == 1 and len(a) == 1]


def _gone_and_new(want: Objects, have: Objects, kind: str) -> tuple[list[str], list[str]]:
    w, h = want.get(kind, {}), have.get(kind, {})
    return [n for n in w if n not in h], [n for n in h if n not in w]


def _pair_tables(want: Objects, have: Objects) -> list[Difference]:
    gone, new = _gone_and_new(want, have, "table")
    if not gone or not new:
        return []

    def signature(objects: Objects, table: str) -> str:
        columns = sorted(
            (f["name"], _signature("column", {k: v for k, v in f.items() if k != "table"}))
            for f in objects.get("column", {}).values()
            if f.get("table") == table
        )
        return json.dumps([_signature("table", objects["table"][table]), columns])

    pairs = _unique_pairs(
        {n: signature(want, n) for n in gone}, {n: signature(have, n) for n in new}
    )
    renames = []
    for old, new_name in pairs:
        renames.append(
            Difference(
                "table",
                old,
                RENAMED,
                want["table"][old],
                have["table"][new_name],
                renamed_to=new_name,
            )
        )
        _substitute(have, new_name, old, kinds=None)
    return renames


def _column_signature(fields: Mapping[str, Any]) -> str:
    """A column renamed keeps its place; one dropped and added again goes last."""
    return f"{fields.get('position')} {_signature('column', fields)}"


def _pair_columns(want: Objects, have: Objects) -> list[Difference]:
    renames = []
    for table in sorted(
        {want["column"][n]["table"] for n in _gone_and_new(want, have, "column")[0]}
    ):
        gone, new = _gone_and_new(want, have, "column")
        pairs = _unique_pairs(
            {
                n: _column_signature(want["column"][n])
                for n in gone
                if want["column"][n]["table"] == table
            },
            {
                n: _column_signature(have["column"][n])
                for n in new
                if have["column"][n]["table"] == table
            },
        )
        for old, new_name in pairs:
            live = have["column"][new_name]
            renames.append(
                Difference("column", old, RENAMED, want["column"][old], live, renamed_to=new_name)
            )
            _substitute(have, new_name, old, kinds=("column", "comment", "sequence"))
            _substitute(
                have, live["name"], want["column"][old]["name"], kinds=_CHILDREN[1:], table=table
            )
            have["column"][old]["name"] = want["column"][old]["name"]
    return renames


def _pair_kind(want: Objects, have: Objects, kind: str) -> list[Difference]:
    gone, new = _gone_and_new(want, have, kind)
    if not gone or not new:
        return []
    pairs = _unique_pairs(
        {n: _signature(kind, want[kind][n]) for n in gone},
        {n: _signature(kind, have[kind][n]) for n in new},
    )
    renames = []
    for old, new_name in pairs:
        renames.append(
            Difference(
                kind, old, RENAMED, want[kind][old], have[kind][new_name], renamed_to=new_name
            )
        )
        have[kind][old] = dict(want[kind][old])
        del have[kind][new_name]
        _rekey_comments(have, new_name, old)
    return renames


def _rekey_comments(have: Objects, new: str, old: str) -> None:
    comments = have.get("comment", {})
    for key in [k for k, f in comments.items() if f.get("identity") == new]:
        fields = comments.pop(key)
        fields["identity"] = old
        comments[f"{fields['object_type']} {old}"] = fields


def _token(text: str) -> re.Pattern[str]:
    """``text`` as a whole name: not part of a longer one, nor a qualified name's second part
    (except after NEW. and OLD., as a trigger's WHEN clause names columns)."""
    before = r'(?:(?<![\w$".])|(?<=(?i:new)\.)|(?<=(?i:old)\.))'
    return re.compile(before + re.escape(text) + r'(?![\w$"])')


def _replace_token(value: str, old: str, new: str) -> str:
    return _token(old).sub(lambda _: new, value)


def _substitute(
    have: Objects, old: str, new: str, *, kinds: Iterable[str] | None, table: str | None = None
) -> None:
    """Rename ``old`` to ``new`` wherever it appears as a whole token, keys included."""
    pattern = _token(old)

    def swap(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub(lambda _: new, value)
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    for kind in list(have) if kinds is None else kinds:
        named = have.get(kind, {})
        for key in list(named):
            fields = named[key]
            if table is not None and fields.get("table") != table:
                continue
            del named[key]
            named[swap(key)] = {k: swap(v) for k, v in fields.items()}


# --- folding and order ----------------------------------------------------------------


def _fold(diffs: list[Difference]) -> list[Difference]:
    """Move the objects of an added or missing table into that table's difference."""
    tables = {(d.name, d.change) for d in diffs if d.kind == "table" and d.change != CHANGED}
    parts: dict[tuple[str, str], list[Difference]] = {}
    rest = []
    for d in diffs:
        fields = d.expected if d.change == MISSING else d.live
        owner = (str((fields or {}).get("table")), d.change)
        if d.kind in _FOLDED and owner in tables:
            parts.setdefault(owner, []).append(d)
        else:
            rest.append(d)
    return [
        Difference(
            d.kind,
            d.name,
            d.change,
            d.expected,
            d.live,
            d.fields,
            d.renamed_to,
            tuple(parts.get((d.name, d.change), ())),
        )
        if d.kind == "table"
        else d
        for d in rest
    ]


def _order(diffs: list[Difference]) -> list[Difference]:
    rank = {kind: i for i, kind in enumerate(KINDS)}
    return sorted(diffs, key=lambda d: (rank.get(d.kind, len(rank)), d.name))


def _notes(expected: Fingerprint, live: Fingerprint) -> list[str]:
    notes = []
    for name, version in sorted(live.extensions.items()):
        other = expected.extensions.get(name)
        if other is not None and other != version:
            notes.append(f"extension {name} is version {version} live, {other} expected")
    return notes


# --- rendering ------------------------------------------------------------------------


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


_DESCRIBE: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "column": _column_text,
    "comment": lambda f: _value(f.get("text")),
    "enum": lambda f: "labels: " + ", ".join(f.get("labels") or []),
    "policy": _policy_text,
}


def _plural(kind: str, count: int) -> str:
    if count == 1 or kind == "statistics":
        return f"{count} {kind}"
    if kind.endswith("y"):
        return f"{count} {kind[:-1]}ies"
    return f"{count} {kind}{'es' if kind.endswith('x') else 's'}"


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    return " ".join(str(value).split())


def _cell(text: str) -> str:
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"


def _row(d: Difference) -> tuple[str, str, str, str, str]:
    name = f"{d.name} -> {d.renamed_to}" if d.renamed_to else d.name
    expected, live = describe(d.kind, d.expected, d.fields), describe(d.kind, d.live, d.fields)
    if d.parts:
        counted: dict[str, int] = {}
        for part in d.parts:
            counted[part.kind] = counted.get(part.kind, 0) + 1
        with_parts = "with " + ", ".join(_plural(k, n) for k, n in counted.items())
        expected, live = (with_parts, "-") if d.change == MISSING else ("-", with_parts)
    if d.change == RENAMED:
        expected, live = d.name, str(d.renamed_to)
    return d.kind, name, d.change, _cell(expected), _cell(live)


def render(report: DriftReport) -> str:
    """The report as a table for a terminal."""
    source = f"expected: {report.expected_from}"
    if not report.drifted:
        lines = [
            f"No drift: database {report.database} matches its applied migrations "
            f"({report.compared} objects compared; {source})."
        ]
    else:
        count = len(report.differences)
        lines = [
            f"Drift: {count} difference{'s' if count != 1 else ''} in database "
            f"{report.database} ({source}).",
            "",
        ]
        rows = [("KIND", "NAME", "CHANGE", "EXPECTED", "LIVE"), *map(_row, report.differences)]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines += [
            "  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
            for r in rows
        ]
        lines += [
            "",
            "`--revert-sql` prints what would undo it, `--adopt-sql` a migration that keeps it.",
        ]
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)
