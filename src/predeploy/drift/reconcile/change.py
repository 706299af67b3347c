"""DROP, RENAME and ALTER statements: from what a database has to what it should have."""

from __future__ import annotations

from collections.abc import Callable

from predeploy.drift.reconcile._text import (
    DESTROY,
    LOCK,
    SAFE,
    Fields,
    Out,
    body,
    comment_target,
    first,
    lit,
    local,
    manual,
    on,
    sequence_options,
    split,
)
from predeploy.drift.reconcile.create import create
from predeploy.drift.reconcile.table import alter_column, alter_table, options

__all__ = ["alter", "drop", "rename"]

# The word after ALTER / DROP for each kind named by a plain (qualified) name.
_WORD = {
    "schema": "SCHEMA",
    "extension": "EXTENSION",
    "collation": "COLLATION",
    "enum": "TYPE",
    "composite type": "TYPE",
    "range type": "TYPE",
    "domain": "DOMAIN",
    "sequence": "SEQUENCE",
    "function": "FUNCTION",
    "procedure": "PROCEDURE",
    "aggregate": "AGGREGATE",
    "table": "TABLE",
    "index": "INDEX",
    "statistics": "STATISTICS",
    "view": "VIEW",
    "materialized view": "MATERIALIZED VIEW",
    "event trigger": "EVENT TRIGGER",
}
_DROP_LABEL = {
    "schema": DESTROY, "extension": DESTROY, "enum": DESTROY, "composite type": DESTROY,
    "range type": DESTROY, "domain": DESTROY, "sequence": DESTROY, "table": DESTROY,
    "materialized view": DESTROY,
}  # fmt: skip
_ON_TABLE = {"trigger": "TRIGGER", "rule": "RULE", "policy": "POLICY"}


def drop(kind: str, name: str, f: Fields) -> list[Out]:
    """Statements that remove ``name``."""
    if kind in _DROP_ON_TABLE:
        return [_DROP_ON_TABLE[kind](name, f)]
    if kind == "sequence" and f.get("identity"):
        return []  # it goes with its identity column
    if kind == "index" and not f.get("partitioned"):
        return [Out(f"DROP INDEX CONCURRENTLY IF EXISTS {name};", SAFE, kind)]
    word = "FOREIGN TABLE" if kind == "table" and f.get("kind") == "foreign" else _WORD[kind]
    return [Out(f"DROP {word} IF EXISTS {name};", _DROP_LABEL.get(kind, SAFE), kind)]


def _drop_child(kind: str) -> Callable[[str, Fields], Out]:
    def build(name: str, f: Fields) -> Out:
        child, table = on(name)
        return Out(f"DROP {_ON_TABLE[kind]} IF EXISTS {child} ON {table};", LOCK, kind)

    return build


_DROP_ON_TABLE: dict[str, Callable[[str, Fields], Out]] = {
    "comment": lambda n, f: Out(f"COMMENT ON {comment_target(f)} IS NULL;", SAFE, "comment"),
    "column": lambda n, f: Out(
        f"ALTER TABLE {f['table']} DROP COLUMN {f['name']};", DESTROY, "column"
    ),
    "constraint": lambda n, f: Out(
        "ALTER TABLE {1} DROP CONSTRAINT {0};".format(*on(n)), LOCK, "constraint"
    ),
    **{kind: _drop_child(kind) for kind in _ON_TABLE},
}


def rename(kind: str, have: str, want: str, f: Fields) -> list[Out]:
    """Statements that rename ``have`` to ``want``."""
    if kind == "column":
        old, new = local(have), local(want)
        return [Out(f"ALTER TABLE {f['table']} RENAME COLUMN {old} TO {new};", LOCK, kind)]
    if kind == "constraint" or kind in _ON_TABLE:
        (old, table), (new, _) = on(have), on(want)
        if kind == "constraint":
            return [Out(f"ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new};", LOCK, kind)]
        return [Out(f"ALTER {_ON_TABLE[kind]} {old} ON {table} RENAME TO {new};", LOCK, kind)]
    word = _WORD[kind]
    label = LOCK if kind == "table" else SAFE
    have_path, want_path = _path(have), _path(want)
    (*have_schema, old), (*want_schema, new) = split(have_path), split(want_path)
    outs, current = [], have
    if have_schema != want_schema and kind != "index":
        outs.append(Out(f"ALTER {word} {have} SET SCHEMA {'.'.join(want_schema)};", label, kind))
        current = ".".join([*want_schema, old]) + have[len(have_path) :]
    if old != new:
        outs.append(Out(f"ALTER {word} {current} RENAME TO {new};", label, kind))
    return outs


def _path(name: str) -> str:
    """A function's name without its argument list (other names unchanged)."""
    quoted = False
    for index, char in enumerate(name):
        quoted = quoted != (char == '"')
        if char == "(" and not quoted:
            return name[:index]
    return name


def alter(kind: str, name: str, have: Fields, want: Fields, fields: tuple[str, ...]) -> list[Out]:
    """Statements that change ``name`` from ``have`` to ``want`` (``fields`` differ)."""
    builder = _ALTERS.get(kind)
    if builder is None:
        return [manual(f"{kind} {name}: change {', '.join(fields)} by hand", kind)]
    return builder(name, have, want, set(fields))


def _replace(kind: str, name: str, have: Fields, want: Fields) -> list[Out]:
    return drop(kind, name, have) + create(kind, name, want)


def _constraint(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    if str(have.get("definition")).removesuffix(" NOT VALID") == want.get("definition"):
        child, table = on(name)
        return [Out(f"ALTER TABLE {table} VALIDATE CONSTRAINT {child};", SAFE, "constraint")]
    return _replace("constraint", name, have, want)


def _index(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    if fields == {"valid"}:
        if want.get("valid"):
            return [Out(f"REINDEX INDEX CONCURRENTLY {name};", SAFE, "index")]
        return [manual(f"index {name} is INVALID on the other side: drop it, or build it", "index")]
    return _replace("index", name, have, want)


def _sequence(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    outs = []
    changed = fields & {"type", "increment", "minimum", "maximum", "start", "cache", "cycle"}
    if changed:
        outs.append(
            Out(f"ALTER SEQUENCE {name} {sequence_options(want, changed)};", SAFE, "sequence")
        )
    if "owned_by" in fields:
        sql = f"ALTER SEQUENCE {name} OWNED BY {want.get('owned_by') or 'NONE'};"
        outs.append(Out(sql, SAFE, "owned by"))
    if "persistence" in fields:
        word = "UNLOGGED" if want.get("persistence") == "unlogged" else "LOGGED"
        outs.append(Out(f"ALTER SEQUENCE {name} SET {word};", SAFE, "sequence"))
    return outs


def _view(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    outs = []
    if "definition" in fields:
        definition = str(want["definition"]).strip().rstrip(";")
        outs.append(Out(f"CREATE OR REPLACE VIEW {name} AS\n{definition};", SAFE, "view"))
    if "options" in fields:
        outs += options(f"ALTER VIEW {name}", have.get("options"), want.get("options"), "view")
    return outs


def _matview(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    statements = [o.sql for o in _replace("materialized view", name, have, want)]
    text = f"materialized view {name} changed: drop and create it again, then its indexes:\n"
    return [manual(text + "\n".join(statements), "materialized view")]


def _function(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    kind = (
        "procedure"
        if str(want.get("definition", "")).startswith("CREATE OR REPLACE PROCEDURE")
        else "function"
    )
    if "result" in fields:
        return _replace(kind, name, have, want)
    return [Out(body(want["definition"]), SAFE, kind)]


def _trigger(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    if "definition" in fields:
        return _replace("trigger", name, have, want)
    child, table = on(name)
    return [Out(f"ALTER TABLE {table} {want['enabled']} TRIGGER {child};", LOCK, "trigger")]


def _rule(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    outs = []
    if "definition" in fields:
        text = body(want["definition"]).replace("CREATE RULE", "CREATE OR REPLACE RULE", 1)
        outs.append(Out(text, LOCK, "rule"))
    if "enabled" in fields:
        child, table = on(name)
        outs.append(Out(f"ALTER TABLE {table} {want['enabled']} RULE {child};", LOCK, "rule"))
    return outs


def _policy(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    dropped = any(have.get(k) is not None and want.get(k) is None for k in ("using", "check"))
    if fields & {"command", "permissive"} or dropped:
        return _replace("policy", name, have, want)
    child, table = on(name)
    text = f"ALTER POLICY {child} ON {table}"
    if "roles" in fields:
        text += f" TO {', '.join(want.get('roles') or ['PUBLIC'])}"
    if "using" in fields:
        text += f" USING ({want['using']})"
    if "check" in fields:
        text += f" WITH CHECK ({want['check']})"
    return [Out(text + ";", LOCK, "policy")]


def _enum(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    before, after = list(have.get("labels") or []), list(want.get("labels") or [])
    extra = [v for v in before if v not in after]
    absent = [v for v in after if v not in before]
    if extra and len(extra) == len(absent):
        renamed = dict(zip(extra, absent, strict=True))
        if [renamed.get(v, v) for v in before] == after:
            return [
                Out(f"ALTER TYPE {name} RENAME VALUE {lit(o)} TO {lit(n)};", SAFE, "enum")
                for o, n in renamed.items()
            ]
    outs = []
    for value in absent:  # in the wanted order, each after the one before it
        index = after.index(value)
        place = ""
        if index:
            place = f" AFTER {lit(after[index - 1])}"
        elif len(after) > 1:
            place = f" BEFORE {lit(after[1])}"
        outs.append(
            Out(f"ALTER TYPE {name} ADD VALUE IF NOT EXISTS {lit(value)}{place};", SAFE, "enum")
        )
    if extra:
        values = ", ".join(lit(v) for v in extra)
        text = (
            f"enum {name} has {values}, which PostgreSQL cannot drop from an enum: create the "
            f"type anew, ALTER each column to it (USING col::text::new_type), drop the old one"
        )
        outs.append(manual(text, "enum"))
    elif [v for v in before + absent if v in after] != after and not absent:
        outs.append(manual(f"enum {name}: its values are in another order; recreate it", "enum"))
    return outs


def _domain(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    head, outs = f"ALTER DOMAIN {name}", []
    if "default" in fields:
        value = want.get("default")
        sql = f"{head} DROP DEFAULT;" if value is None else f"{head} SET DEFAULT {value};"
        outs.append(Out(sql, SAFE, "domain"))
    if "not_null" in fields:
        outs.append(
            Out(f"{head} {'SET' if want.get('not_null') else 'DROP'} NOT NULL;", LOCK, "domain")
        )
    if "constraints" in fields:
        before, after = have.get("constraints") or [], want.get("constraints") or []
        outs += [
            Out(f"{head} DROP CONSTRAINT {first(c)[0]};", SAFE, "domain")
            for c in before
            if c not in after
        ]
        outs += [
            Out(f"{head} ADD CONSTRAINT {c};", LOCK, "domain") for c in after if c not in before
        ]
    if fields & {"base", "collation"}:
        outs.append(
            manual(f"domain {name}: its base type or collation changed; recreate it", "domain")
        )
    return outs


def _composite(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    before = dict(first(a) for a in have.get("attributes") or [])
    after = dict(first(a) for a in want.get("attributes") or [])
    actions = [f"DROP ATTRIBUTE {a}" for a in before if a not in after]
    actions += [f"ALTER ATTRIBUTE {a} TYPE {t}" for a, t in after.items() if before.get(a, t) != t]
    actions += [f"ADD ATTRIBUTE {a} {t}" for a, t in after.items() if a not in before]
    kept = [a for a in before if a in after] + [a for a in after if a not in before]
    if kept != list(after):
        return [manual(f"composite type {name}: its attributes are in another order", "enum")]
    return [Out(f"ALTER TYPE {name} {', '.join(actions)};", LOCK, "composite type")]


def _extension(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    return [Out(f"ALTER EXTENSION {name} SET SCHEMA {want['schema']};", LOCK, "extension")]


def _event_trigger(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    if fields == {"enabled"}:
        return [Out(f"ALTER EVENT TRIGGER {name} {want['enabled']};", SAFE, "event trigger")]
    return _replace("event trigger", name, have, want)


def _statistics(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    return _replace("statistics", name, have, want)


def _comment(name: str, have: Fields, want: Fields, fields: set[str]) -> list[Out]:
    return create("comment", name, want)


_ALTERS: dict[str, Callable[[str, Fields, Fields, set[str]], list[Out]]] = {
    "table": alter_table,
    "column": alter_column,
    "constraint": _constraint,
    "index": _index,
    "statistics": _statistics,
    "sequence": _sequence,
    "view": _view,
    "materialized view": _matview,
    "function": _function,
    "procedure": _function,
    "aggregate": lambda n, h, w, f: _replace("aggregate", n, h, w),
    "trigger": _trigger,
    "rule": _rule,
    "policy": _policy,
    "enum": _enum,
    "domain": _domain,
    "composite type": _composite,
    "extension": _extension,
    "event trigger": _event_trigger,
    "comment": _comment,
}
