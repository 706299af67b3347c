"""SQL that reconciles drift, as text for a human: drift itself never runs any of it.

``revert_sql`` brings the live database back to the schema its migrations build;
``adopt_sql`` is a new migration that makes the history build the live schema.
Both come from one generator that turns what one side has into what the other
wants. Each statement carries a label:

- safe: no lock that blocks the application, no data lost
- takes a lock: holds a lock that blocks the table's readers or writers, briefly
  or while it scans
- rewrites: rewrites or fills a whole table (a long lock, disk space)
- destructive: loses data
- manual: PostgreSQL cannot do it in one statement (a value dropped from an enum,
  a changed partition key): written as a comment that says what to do

Every statement names tables as the migrations do. So renames run first when
reverting (live names back to the migrations' names) and last when adopting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from predeploy.drift.fingerprint import KINDS
from predeploy.drift.reconcile._text import LABELS, Fields, Out
from predeploy.drift.reconcile.change import alter, drop, rename
from predeploy.drift.reconcile.create import create, create_table

if TYPE_CHECKING:
    from predeploy.drift.model import Difference

__all__ = ["LABELS", "Step", "adopt_sql", "adopt_steps", "revert_sql", "revert_steps"]

_RANK = {kind: float(i) for i, kind in enumerate(KINDS)}
_RANK["owned by"] = _RANK["column"] + 0.5
_RANK["foreign key"] = _RANK["index"] + 0.5
_REVERT_PHASES = ("rename", "drop", "alter", "create", "comment")
_ADOPT_PHASES = ("drop", "alter", "create", "comment", "rename")
_REVERT_HEAD = (
    "-- predeploy drift: statements that bring the live database back to the schema its\n"
    "-- applied migrations build. Review each before running it: predeploy never does.\n"
)
_ADOPT_HEAD = (
    "-- predeploy drift: a migration that makes the history build the live schema.\n"
    "-- Save it as a new migration (predeploy new NAME). The live database already has\n"
    "-- these changes: mark it applied there with `predeploy resolve --applied NAME`.\n"
)


@dataclass(frozen=True)
class Step:
    """One statement (or, for a manual step, a comment saying what to do)."""

    sql: str
    label: str
    about: str

    def as_dict(self) -> dict[str, str]:
        return {"sql": self.sql, "label": self.label, "about": self.about}


def revert_steps(diffs: Iterable[Difference]) -> list[Step]:
    """The statements that make live match the migrations' schema, in an order that runs."""
    return _plan(diffs, revert=True)


def adopt_steps(diffs: Iterable[Difference]) -> list[Step]:
    """The statements that make the migrations' schema match live."""
    return _plan(diffs, revert=False)


def revert_sql(diffs: Iterable[Difference]) -> str:
    """The revert script: each statement after a comment with its label and object."""
    return _script(_REVERT_HEAD, revert_steps(diffs))


def adopt_sql(diffs: Iterable[Difference]) -> str:
    """The adopt migration: each statement after a comment with its label and object."""
    return _script(_ADOPT_HEAD, adopt_steps(diffs))


def _script(head: str, steps: list[Step]) -> str:
    if not steps:
        return head + "-- Nothing to do: no drift.\n"
    return head + "".join(f"\n-- [{s.label}] {s.about}\n{s.sql}\n" for s in steps)


def _plan(diffs: Iterable[Difference], *, revert: bool) -> list[Step]:
    phases = _REVERT_PHASES if revert else _ADOPT_PHASES
    keyed: list[tuple[tuple[int, float, str, int], Step]] = []
    for d in diffs:
        have, want = (d.live, d.expected) if revert else (d.expected, d.live)
        names = (d.renamed_to or d.name, d.name)
        have_name, want_name = names if revert else names[::-1]
        about = f"{d.kind} {d.name}: {d.change}"
        if d.renamed_to:
            about = f"{d.kind} {have_name}: renamed, to {want_name}"
        elif d.fields:
            about += f" ({', '.join(d.fields)})"
        parts = [(p.kind, p.name, p.expected if revert else p.live) for p in d.parts]
        for phase, out in _outs(d.kind, (have_name, have), (want_name, want), d.fields, parts):
            rank = _RANK.get(out.rank, 0.0)
            backwards = phase == "drop" or (phase == "rename" and not revert)
            order = (phases.index(phase), -rank if backwards else rank, d.name, len(keyed))
            keyed.append((order, Step(out.sql, out.label, about)))
    return [step for _, step in sorted(keyed, key=lambda pair: pair[0])]


def _outs(
    kind: str,
    have: tuple[str, Fields | None],
    want: tuple[str, Fields | None],
    fields: tuple[str, ...],
    parts: list[tuple[str, str, Fields | None]],
) -> list[tuple[str, Out]]:
    (have_name, have_fields), (want_name, want_fields) = have, want
    if have_fields is None and want_fields is not None:
        if kind == "table":
            made = create_table(want_name, want_fields, parts)
        else:
            made = create(kind, want_name, want_fields)
        return [("comment" if o.rank == "comment" else "create", o) for o in made]
    if want_fields is None and have_fields is not None:
        phase = "comment" if kind == "comment" else "drop"
        return [(phase, o) for o in drop(kind, have_name, have_fields)]
    if have_fields is None or want_fields is None:
        return []
    if have_name != want_name:
        return [("rename", o) for o in rename(kind, have_name, want_name, have_fields)]
    phase = "comment" if kind == "comment" else "alter"
    return [(phase, o) for o in alter(kind, want_name, have_fields, want_fields, fields)]
