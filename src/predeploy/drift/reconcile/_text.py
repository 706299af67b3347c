"""What the SQL builders share: labels, one statement, names and literals."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import sql

SAFE, LOCK, REWRITE, DESTROY, MANUAL = "safe", "takes a lock", "rewrites", "destructive", "manual"
LABELS = (SAFE, LOCK, REWRITE, DESTROY, MANUAL)

Fields = Mapping[str, Any]


@dataclass(frozen=True)
class Out:
    """A statement, its label, and the kind (or ``owned by`` / ``foreign key``) that orders it."""

    sql: str
    label: str
    rank: str


def lit(value: str) -> str:
    """A string literal, quoted as PostgreSQL reads it."""
    return sql.Literal(value).as_string(None)


def split(ident: str) -> list[str]:
    """``schema.name`` (each part quoted where needed) into its parts, quotes kept."""
    parts, current, quoted = [], "", False
    for char in ident:
        if char == '"':
            quoted = not quoted
        if char == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def local(ident: str) -> str:
    """The last part of a qualified name."""
    return split(ident)[-1]


def first(text: str) -> tuple[str, str]:
    """The leading identifier of ``text`` (quoted or not) and what follows its space."""
    if text.startswith('"'):
        end = 1
        while True:
            end = text.index('"', end) + 1
            if not text.startswith('"', end):
                break
            end += 1
        return text[:end], text[end + 1 :]
    head, _, rest = text.partition(" ")
    return head, rest


def on(name: str) -> tuple[str, str]:
    """``child on schema.table`` (a constraint's, trigger's or policy's name) into its parts."""
    child, rest = first(name)
    return child, rest.removeprefix("on ")


def manual(text: str, rank: str) -> Out:
    """A step PostgreSQL cannot take in one statement: a comment saying what to do."""
    return Out("-- " + text.replace("\n", "\n-- "), MANUAL, rank)


def column_sql(f: Fields) -> str:
    """A column as CREATE TABLE and ADD COLUMN write it."""
    text = f"{f['name']} {f['type']}"
    if f.get("collation"):
        text += f" COLLATE {f['collation']}"
    if f.get("identity"):
        text += f" GENERATED {f['identity']} AS IDENTITY"
    if f.get("generated"):
        text += f" {f['generated']}"
    if f.get("default") is not None:
        text += f" DEFAULT {f['default']}"
    return text + (" NOT NULL" if f.get("not_null") else "")


def sequence_options(f: Fields, only: Iterable[str] | None = None) -> str:
    """A sequence's options as CREATE/ALTER SEQUENCE write them (never its counter)."""
    words = {
        "type": f"AS {f.get('type')}",
        "increment": f"INCREMENT BY {f.get('increment')}",
        "minimum": f"MINVALUE {f.get('minimum')}",
        "maximum": f"MAXVALUE {f.get('maximum')}",
        "start": f"START WITH {f.get('start')}",
        "cache": f"CACHE {f.get('cache')}",
        "cycle": "CYCLE" if f.get("cycle") else "NO CYCLE",
    }
    chosen = set(words if only is None else only)
    return " ".join(text for key, text in words.items() if key in chosen)


def comment_target(f: Fields) -> str:
    """What COMMENT ON names, from pg_identify_object's type and identity."""
    kind, identity = str(f["object_type"]), str(f["identity"])
    if kind in ("table constraint", "domain constraint", "trigger", "policy", "rule"):
        child, table = on(identity)
        word = "CONSTRAINT" if kind.endswith("constraint") else kind.upper()
        return f"{word} {child} ON {'DOMAIN ' if kind == 'domain constraint' else ''}{table}"
    if kind.endswith(" column"):  # a table's, view's or composite type's
        return f"COLUMN {identity}"
    return f"{kind.upper()} {identity}"


def body(definition: object) -> str:
    """A deparsed definition as one statement ending in a semicolon."""
    return str(definition).rstrip().rstrip(";") + ";"
