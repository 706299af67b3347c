"""The comparison of two fingerprints: pure, two fingerprints in, differences out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from predeploy.drift.fingerprint import KINDS, Fingerprint
from predeploy.drift.model import (
    ADDED,
    CHANGED,
    MISSING,
    Difference,
    Objects,
    compared,
)
from predeploy.drift.renames import CHILDREN, pair_renames

__all__ = ["compare"]

_FOLDED = (*CHILDREN, "sequence", "comment")


def compare(expected: Fingerprint, live: Fingerprint) -> list[Difference]:
    """Every difference between ``expected`` and ``live``, in dependency order of kinds."""
    want = _copy(expected.objects)
    have = _copy(live.objects)
    renames = pair_renames(want, have)
    plain = [d for kind in KINDS for d in _diff_kind(kind, want.get(kind, {}), have.get(kind, {}))]
    return _order(renames + _fold(plain))


def _copy(objects: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> Objects:
    return {
        kind: {name: dict(fields) for name, fields in named.items()}
        for kind, named in objects.items()
    }


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
            cw, ch = compared(kind, w), compared(kind, h)
            fields = tuple(sorted(k for k in cw.keys() | ch.keys() if cw.get(k) != ch.get(k)))
            if fields:
                out.append(Difference(kind, name, CHANGED, w, h, fields=fields))
    return out


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
