"""Renames: a missing and an added object of one kind that are otherwise equal.

Once a table (or a type, a sequence, a view) is paired, its live name is replaced by
the expected one wherever it appears as a whole name, keys included, so that what
names it (columns, indexes, defaults, views) compares equal; a column's rename does
the same within its table. Pairs must be one to one: two candidates, no pair.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from predeploy.drift.model import RENAMED, Difference, Objects, compared

__all__ = ["CHILDREN", "pair_renames"]

# Kinds that belong to one table: they follow its renames and fold into its difference.
CHILDREN = ("column", "constraint", "index", "statistics", "trigger", "rule", "policy")


# Kinds whose renames are paired; the rest show as missing + added.
_RENAMEABLE = (  # in this order: what others name first, so that their names follow
    "collation",
    "enum",
    "domain",
    "composite type",
    "range type",
    "sequence",
    "view",
    "materialized view",
    *CHILDREN,
    "function",
    "procedure",
    "aggregate",
)


# Kinds that other objects name by their qualified name (a column's type, a default's
# sequence, a view's view): a rename of one is substituted everywhere, as a table's is.
_REFERENCED = frozenset(
    {"collation", "enum", "domain", "composite type", "range type", "sequence", "view",
     "materialized view"}
)  # fmt: skip


_IDENTITY_FIELDS = frozenset({"name", "identity"})


def pair_renames(want: Objects, have: Objects) -> list[Difference]:
    """Every rename between ``want`` and ``have``; ``have`` is changed to use the old names."""
    renames = _pair_tables(want, have)
    renames += _pair_columns(want, have)
    for kind in _RENAMEABLE:
        if kind != "column":
            renames += _pair_kind(want, have, kind)
    return renames


def _signature(kind: str, fields: Mapping[str, Any]) -> str:
    """The fields that say what an object is, without what names it."""
    name = fields.get("name")
    kept = {k: v for k, v in compared(kind, fields).items() if k not in _IDENTITY_FIELDS}
    definition = kept.get("definition")
    if isinstance(name, str) and isinstance(definition, str):
        if "schema" in fields:  # a function's definition names it qualified (and its body may)
            definition = definition.replace(f"{fields['schema']}.{name}(", "\x00(", 1)
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
                have, live["name"], want["column"][old]["name"], kinds=CHILDREN[1:], table=table
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
        if kind in _REFERENCED:  # columns, defaults and views name it: they follow
            _substitute(have, new_name, old, kinds=None)
        have[kind].pop(new_name, None)
        have[kind][old] = dict(want[kind][old])
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
