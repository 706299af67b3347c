"""Drift: what changed in the live schema behind the migrations' back.

``compare`` is pure: two fingerprints (predeploy.drift.fingerprint) in, a list of
differences out. An object is "added by hand" (live only), "missing" (expected
only), "changed" (both, with the fields that differ) or "renamed" (a missing and an
added object of one kind that are otherwise equal; what names it follows). The
columns, constraints, indexes, triggers, policies and comments of a table that is
itself added or missing travel inside that table's difference as its ``parts``.

``detect`` fingerprints the live database and compares; ``render`` is the table an
operator reads. Drift never changes a database: the SQL that would revert or adopt
the differences is text (``revert_sql`` / ``adopt_sql``, or their labelled steps).
"""

from predeploy.drift.compare import compare
from predeploy.drift.model import ADDED, CHANGED, MISSING, RENAMED, Difference, describe
from predeploy.drift.reconcile import (
    LABELS,
    Step,
    adopt_sql,
    adopt_steps,
    revert_sql,
    revert_steps,
)
from predeploy.drift.report import DriftReport, detect, render

__all__ = [
    "ADDED",
    "CHANGED",
    "LABELS",
    "MISSING",
    "RENAMED",
    "Difference",
    "DriftReport",
    "Step",
    "adopt_sql",
    "adopt_steps",
    "compare",
    "describe",
    "detect",
    "render",
    "revert_sql",
    "revert_steps",
]
