"""CREATE statements: an object from its fingerprint fields."""

from __future__ import annotations

from collections.abc import Callable

from predeploy.drift.reconcile._text import (
    LOCK,
    REWRITE,
    SAFE,
    Fields,
    Out,
    body,
    column_sql,
    comment_target,
    lit,
    manual,
    on,
    sequence_options,
)

__all__ = ["create", "create_table", "table_flags"]

_VOLATILE = ("nextval(", "random(", "uuid", "clock_timestamp(", "timeofday(")


def create(kind: str, name: str, f: Fields) -> list[Out]:
    """Statements that create ``name`` as ``f`` describes it."""
    builder = _CREATORS.get(kind)
    if builder is None:
        return [manual(f"{kind} {name}: create it by hand", kind)]
    return builder(name, f)


def create_table(name: str, f: Fields, parts: list[tuple[str, str, Fields | None]]) -> list[Out]:
    """A table with its columns inline, then its own objects (``parts``)."""
    if f.get("kind") == "foreign":
        return [manual(f"foreign table {name}: create it with its server and options", "table")]
    columns = sorted(
        (p for k, _, p in parts if k == "column" and p is not None and not p.get("inherited")),
        key=lambda c: c["position"],
    )
    if f.get("partition_of"):
        head = f"CREATE TABLE {name} PARTITION OF {f['partition_of']} {f['partition_bound']}"
    else:
        unlogged = "UNLOGGED " if f.get("persistence") == "unlogged" else ""
        inline = ",\n    ".join(column_sql(c) for c in columns)
        head = f"CREATE {unlogged}TABLE {name} (\n    {inline}\n)"
        if f.get("inherits"):
            head += f" INHERITS ({', '.join(f['inherits'])})"
        if f.get("partition_key"):
            head += f" PARTITION BY {f['partition_key']}"
        if f.get("access_method") not in (None, "heap"):
            head += f" USING {f['access_method']}"
    if f.get("options"):
        head += f" WITH ({', '.join(f['options'])})"
    outs = [Out(head + ";", SAFE, "table")]
    outs += table_flags(name, {}, f)
    for kind, part_name, fields in parts:
        if kind != "column" and fields is not None and not _comes_with_parent(fields):
            outs += create(kind, part_name, fields)
    return outs


def _comes_with_parent(f: Fields) -> bool:
    """A partition's or child table's index or constraint made with it from its parent's."""
    return bool(f.get("attached_to") or f.get("inherited"))


def table_flags(name: str, have: Fields, want: Fields) -> list[Out]:
    """Row security and replica identity, where ``want`` differs from ``have``."""
    outs = []
    if bool(have.get("row_security")) != bool(want.get("row_security")):
        word = "ENABLE" if want.get("row_security") else "DISABLE"
        outs.append(Out(f"ALTER TABLE {name} {word} ROW LEVEL SECURITY;", LOCK, "table"))
    if bool(have.get("force_row_security")) != bool(want.get("force_row_security")):
        word = "FORCE" if want.get("force_row_security") else "NO FORCE"
        outs.append(Out(f"ALTER TABLE {name} {word} ROW LEVEL SECURITY;", LOCK, "table"))
    identity = want.get("replica_identity") or "default"
    if (have.get("replica_identity") or "default") != identity:
        if identity == "index":
            outs.append(manual(f"table {name}: REPLICA IDENTITY USING INDEX (name it)", "table"))
        else:
            sql = f"ALTER TABLE {name} REPLICA IDENTITY {identity.upper()};"
            outs.append(Out(sql, LOCK, "table"))
    return outs


def _column(name: str, f: Fields) -> list[Out]:
    default = str(f.get("default") or "")
    fills = f.get("identity") or "STORED" in str(f.get("generated") or "")
    label = REWRITE if fills or any(word in default for word in _VOLATILE) else LOCK
    return [Out(f"ALTER TABLE {f['table']} ADD COLUMN {column_sql(f)};", label, "column")]


def _constraint(name: str, f: Fields) -> list[Out]:
    child, table = on(name)
    rank = "foreign key" if f.get("type") == "foreign key" else "constraint"
    return [Out(f"ALTER TABLE {table} ADD CONSTRAINT {child} {f['definition']};", LOCK, rank)]


def _index(name: str, f: Fields) -> list[Out]:
    definition = str(f["definition"])
    if f.get("valid") is False:
        text = (
            f"index {name} is INVALID (a CREATE INDEX CONCURRENTLY that failed): drop it "
            f"(DROP INDEX CONCURRENTLY {name}) or build it again, rather than keep it"
        )
        return [manual(text, "index")]
    if f.get("partitioned") or f.get("attached_to"):  # attached: built like its siblings
        outs = [Out(definition + ";", LOCK, "index")]
        if f.get("attached_to"):
            sql = f"ALTER INDEX {f['attached_to']} ATTACH PARTITION {name};"
            outs.append(Out(sql, SAFE, "index"))
        return outs
    return [Out(definition.replace(" INDEX ", " INDEX CONCURRENTLY ", 1) + ";", SAFE, "index")]


def _sequence(name: str, f: Fields) -> list[Out]:
    if f.get("identity"):  # its identity column makes it: only its options remain
        return [Out(f"ALTER SEQUENCE {name} {sequence_options(f)};", SAFE, "owned by")]
    unlogged = "UNLOGGED " if f.get("persistence") == "unlogged" else ""
    outs = [Out(f"CREATE {unlogged}SEQUENCE {name} {sequence_options(f)};", SAFE, "sequence")]
    if f.get("owned_by"):
        outs.append(Out(f"ALTER SEQUENCE {name} OWNED BY {f['owned_by']};", SAFE, "owned by"))
    return outs


def _view(name: str, f: Fields, materialized: bool = False) -> list[Out]:
    word = "MATERIALIZED VIEW" if materialized else "VIEW"
    options = f" WITH ({', '.join(f['options'])})" if f.get("options") else ""
    definition = str(f["definition"]).strip().rstrip(";")
    rank = "materialized view" if materialized else "view"
    return [Out(f"CREATE {word} {name}{options} AS\n{definition};", SAFE, rank)]


def _policy(name: str, f: Fields) -> list[Out]:
    child, table = on(name)
    kind = "PERMISSIVE" if f.get("permissive") else "RESTRICTIVE"
    text = f"CREATE POLICY {child} ON {table} AS {kind} FOR {f['command']}"
    text += f" TO {', '.join(f.get('roles') or ['PUBLIC'])}"
    if f.get("using") is not None:
        text += f" USING ({f['using']})"
    if f.get("check") is not None:
        text += f" WITH CHECK ({f['check']})"
    return [Out(text + ";", LOCK, "policy")]


def _trigger(name: str, f: Fields) -> list[Out]:
    outs = [Out(body(f["definition"]), LOCK, "trigger")]
    if f.get("enabled", "ENABLE") != "ENABLE":
        sql = f"ALTER TABLE {f['table']} {f['enabled']} TRIGGER {f['name']};"
        outs.append(Out(sql, LOCK, "trigger"))
    return outs


def _domain(name: str, f: Fields) -> list[Out]:
    text = f"CREATE DOMAIN {name} AS {f['base']}"
    if f.get("collation"):
        text += f" COLLATE {f['collation']}"
    if f.get("default") is not None:
        text += f" DEFAULT {f['default']}"
    if f.get("not_null"):
        text += " NOT NULL"
    text += "".join(f" CONSTRAINT {c}" for c in f.get("constraints") or [])
    return [Out(text + ";", SAFE, "domain")]


def _range(name: str, f: Fields) -> list[Out]:
    options = [f"SUBTYPE = {f['subtype']}"]
    words = (
        ("opclass", "SUBTYPE_OPCLASS"),
        ("collation", "COLLATION"),
        ("canonical", "CANONICAL"),
        ("subdiff", "SUBTYPE_DIFF"),
    )
    options += [f"{word} = {f[key]}" for key, word in words if f.get(key)]
    return [Out(f"CREATE TYPE {name} AS RANGE ({', '.join(options)});", SAFE, "range type")]


def _event_trigger(name: str, f: Fields) -> list[Out]:
    tags = f" WHEN TAG IN ({', '.join(lit(t) for t in f['tags'])})" if f.get("tags") else ""
    text = f"CREATE EVENT TRIGGER {name} ON {f['event']}{tags} EXECUTE FUNCTION {f['function']}();"
    outs = [Out(text, SAFE, "event trigger")]
    if f.get("enabled", "ENABLE") != "ENABLE":
        outs.append(Out(f"ALTER EVENT TRIGGER {name} {f['enabled']};", SAFE, "event trigger"))
    return outs


def _comment(name: str, f: Fields) -> list[Out]:
    return [Out(f"COMMENT ON {comment_target(f)} IS {lit(str(f['text']))};", SAFE, "comment")]


def _enum(name: str, f: Fields) -> list[Out]:
    labels = ", ".join(lit(v) for v in f.get("labels") or [])
    return [Out(f"CREATE TYPE {name} AS ENUM ({labels});", SAFE, "enum")]


def _collation(name: str, f: Fields) -> list[Out]:
    provider = {"i": "icu", "b": "builtin"}.get(str(f.get("collprovider")), "libc")
    options = [f"provider = {provider}"]
    if provider == "libc":
        options += [f"lc_collate = {lit(str(f['collcollate']))}"]
        options += [f"lc_ctype = {lit(str(f['collctype']))}"]
    else:
        options.append(f"locale = {lit(str(f.get('colllocale') or f.get('colliculocale')))}")
    if f.get("collicurules"):
        options.append(f"rules = {lit(str(f['collicurules']))}")
    if f.get("collisdeterministic") is False:
        options.append("deterministic = false")
    return [Out(f"CREATE COLLATION {name} ({', '.join(options)});", SAFE, "collation")]


def _definition(rank: str) -> Callable[[str, Fields], list[Out]]:
    return lambda name, f: [Out(body(f["definition"]), SAFE, rank)]


_CREATORS: dict[str, Callable[[str, Fields], list[Out]]] = {
    "schema": lambda n, f: [Out(f"CREATE SCHEMA IF NOT EXISTS {n};", SAFE, "schema")],
    "extension": lambda n, f: [
        Out(f"CREATE EXTENSION IF NOT EXISTS {n} SCHEMA {f['schema']};", SAFE, "extension")
    ],
    "collation": _collation,
    "enum": _enum,
    "domain": _domain,
    "composite type": lambda n, f: [
        Out(f"CREATE TYPE {n} AS ({', '.join(f['attributes'] or [])});", SAFE, "composite type")
    ],
    "range type": _range,
    "sequence": _sequence,
    "function": _definition("function"),
    "procedure": _definition("procedure"),
    "aggregate": _definition("aggregate"),
    "column": _column,
    "constraint": _constraint,
    "index": _index,
    "statistics": _definition("statistics"),
    "view": _view,
    "materialized view": lambda n, f: _view(n, f, materialized=True),
    "trigger": _trigger,
    "rule": _definition("rule"),
    "policy": _policy,
    "event trigger": _event_trigger,
    "comment": _comment,
}
