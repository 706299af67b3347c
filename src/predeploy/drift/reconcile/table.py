"""ALTER statements for tables and columns: from what one side has to what the other wants."""

from __future__ import annotations

from predeploy.drift.reconcile._text import LOCK, REWRITE, Fields, Out, manual
from predeploy.drift.reconcile.create import table_flags

__all__ = ["alter_column", "alter_table", "options"]


def alter_table(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    """Persistence, options, row security, access method, partitions, inheritance."""
    outs = []
    if "persistence" in fields:
        word = "UNLOGGED" if want.get("persistence") == "unlogged" else "LOGGED"
        outs.append(Out(f"ALTER TABLE {name} SET {word};", REWRITE, "table"))
    if "options" in fields:
        outs += options(f"ALTER TABLE {name}", have.get("options"), want.get("options"), "table")
    outs += table_flags(name, have, want)
    if "access_method" in fields and want.get("access_method"):
        sql = f"ALTER TABLE {name} SET ACCESS METHOD {want['access_method']};"
        outs.append(Out(sql, REWRITE, "table"))
    if fields & {"partition_of", "partition_bound"}:
        outs += _partition(name, have, want)
    if "inherits" in fields:
        before, after = have.get("inherits") or [], want.get("inherits") or []
        outs += [
            Out(f"ALTER TABLE {name} NO INHERIT {p};", LOCK, "table")
            for p in before
            if p not in after
        ]
        outs += [
            Out(f"ALTER TABLE {name} INHERIT {p};", LOCK, "table") for p in after if p not in before
        ]
    if fields & {"kind", "partition_key"}:
        outs.append(
            manual(
                f"table {name}: its partitioning changed; recreate it and move its rows", "table"
            )
        )
    return outs


def options(head: str, have: object, want: object, rank: str) -> list[Out]:
    """RESET the storage parameters ``want`` lacks, SET those it has that differ."""
    before = {o.split("=", 1)[0]: o for o in (have or [])}  # type: ignore[attr-defined]
    after = {o.split("=", 1)[0]: o for o in (want or [])}  # type: ignore[attr-defined]
    outs = []
    gone = [k for k in before if k not in after]
    if gone:
        outs.append(Out(f"{head} RESET ({', '.join(gone)});", LOCK, rank))
    changed = [o for k, o in after.items() if before.get(k) != o]
    if changed:
        outs.append(Out(f"{head} SET ({', '.join(changed)});", LOCK, rank))
    return outs


def _partition(name: str, have: Fields, want: Fields) -> list[Out]:
    outs = []
    if have.get("partition_of"):
        sql = f"ALTER TABLE {have['partition_of']} DETACH PARTITION {name};"
        outs.append(Out(sql, LOCK, "table"))
    if want.get("partition_of"):
        sql = (
            f"ALTER TABLE {want['partition_of']} ATTACH PARTITION {name} {want['partition_bound']};"
        )
        outs.append(Out(sql, LOCK, "table"))
    return outs


def alter_column(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    """Type, collation, identity, default, NOT NULL, storage settings, generation."""
    head = f"ALTER TABLE {want['table']} ALTER COLUMN {want['name']}"
    outs = []
    if fields & {"type", "collation"}:
        collate = f" COLLATE {want['collation']}" if want.get("collation") else ""
        using = f" USING {want['name']}::{want['type']}"
        outs.append(Out(f"{head} TYPE {want['type']}{collate}{using};", REWRITE, "column"))
    if "identity" in fields:
        if not want.get("identity"):
            outs.append(Out(f"{head} DROP IDENTITY;", LOCK, "column"))
        elif not have.get("identity"):
            outs.append(
                Out(f"{head} ADD GENERATED {want['identity']} AS IDENTITY;", LOCK, "column")
            )
        else:
            outs.append(Out(f"{head} SET GENERATED {want['identity']};", LOCK, "column"))
    if "default" in fields:
        sql = (
            f"{head} DROP DEFAULT;"
            if want.get("default") is None
            else f"{head} SET DEFAULT {want['default']};"
        )
        outs.append(Out(sql, LOCK, "column"))
    if "not_null" in fields:
        sql = f"{head} {'SET' if want.get('not_null') else 'DROP'} NOT NULL;"
        outs.append(Out(sql, LOCK, "column"))
    outs += _column_settings(head, want, fields)
    if "generated" in fields:
        if want.get("generated") is None:
            outs.append(Out(f"{head} DROP EXPRESSION;", LOCK, "column"))
        else:
            text = f"column {name}: make it {want['generated']} (drop and add it again)"
            outs.append(manual(text, "column"))
    return outs


def _column_settings(head: str, want: Fields, fields: set[str]) -> list[Out]:
    outs = []
    if "storage" in fields:
        outs.append(Out(f"{head} SET STORAGE {want['storage']};", LOCK, "column"))
    if "compression" in fields:
        outs.append(
            Out(f"{head} SET COMPRESSION {want['compression'] or 'default'};", LOCK, "column")
        )
    if "statistics" in fields:
        target = want["statistics"] if want.get("statistics") is not None else -1
        outs.append(Out(f"{head} SET STATISTICS {target};", LOCK, "column"))
    return outs
