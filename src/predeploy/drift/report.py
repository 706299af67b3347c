"""One drift check: the live database fingerprinted and compared, and its report."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from predeploy.db.connect import Conn
from predeploy.drift import catalogue
from predeploy.drift.compare import compare
from predeploy.drift.fingerprint import Fingerprint
from predeploy.drift.model import CHANGED, MISSING, Difference, describe
from predeploy.errors import ConfigError

__all__ = ["DriftReport", "detect", "render"]

_WIDTH = 48


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
    schema: str | None = None,
) -> DriftReport:
    """Fingerprint ``live_conn``'s database and compare it with ``expected``.

    ConfigError when ``expected`` was taken on another major version: their deparsed
    definitions differ in ways that are not drift.
    """
    started = time.perf_counter()
    live = catalogue.take(live_conn, exclude=exclude).within(schema)
    expected = expected.within(schema)  # ?schema=: this tenant's objects, not its neighbours'
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


def _notes(expected: Fingerprint, live: Fingerprint) -> list[str]:
    notes = []
    for name, version in sorted(live.extensions.items()):
        other = expected.extensions.get(name)
        if other is not None and other != version:
            notes.append(f"extension {name} is version {version} live, {other} expected")
    return notes


def _plural(kind: str, count: int) -> str:
    if count == 1 or kind == "statistics":
        return f"{count} {kind}"
    if kind.endswith("y"):
        return f"{count} {kind[:-1]}ies"
    return f"{count} {kind}{'es' if kind.endswith('x') else 's'}"


def _cell(text: str) -> str:
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"


def _row(d: Difference) -> tuple[str, str, str, str, str]:
    name = d.name
    if d.renamed_to is not None:
        new = d.renamed_to.split(" on ", 1)[0] if " on " in d.name else d.renamed_to
        name = f"{d.name} -> {new}"
    expected, live = _sides(d)
    if d.parts:
        counted: dict[str, int] = {}
        for part in d.parts:
            counted[part.kind] = counted.get(part.kind, 0) + 1
        with_parts = "with " + ", ".join(_plural(k, n) for k, n in counted.items())
        expected, live = (with_parts, "-") if d.change == MISSING else ("-", with_parts)
    return d.kind, name, d.change, _cell(expected), _cell(live)


def _sides(d: Difference) -> tuple[str, str]:
    """Each side's text; of a list that changed, what only that side has (when it has any)."""
    if d.change != CHANGED or d.expected is None or d.live is None:
        return describe(d.kind, d.expected), describe(d.kind, d.live)
    texts = []
    for mine, other in ((d.expected, d.live), (d.live, d.expected)):
        parts = []
        for field in d.fields:
            value, against = mine.get(field), other.get(field)
            only = []
            if isinstance(value, list) and isinstance(against, list):
                only = [v for v in value if v not in against]
            parts.append(f"{field}: + {', '.join(map(str, only))}" if only else None)
            if not only:
                parts[-1] = describe(d.kind, mine, (field,))
        texts.append("; ".join(p for p in parts if p))
    return texts[0], texts[1]


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
