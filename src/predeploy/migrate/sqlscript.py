"""SQL scripts: split into statements and classify them with pglast, PostgreSQL's own parser.

A script runs in one transaction unless a statement cannot run in a transaction
block (CONCURRENTLY index work, VACUUM, ALTER SYSTEM, CREATE/DROP DATABASE, ...)
or the script manages its own transactions (BEGIN/COMMIT): then it runs
statement by statement, outside one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Break", "Script", "Statement", "analyse", "position_to_line_column", "relations"]

# Statement kinds that PostgreSQL refuses inside a transaction block.
_NEVER_IN_TRANSACTION = frozenset(
    {
        "AlterSystemStmt",
        "CreatedbStmt",
        "DropdbStmt",
        "CreateTableSpaceStmt",
        "DropTableSpaceStmt",
        "CreateSubscriptionStmt",
        "DropSubscriptionStmt",
    }
)


_LABELS = {
    "IndexStmt": "CREATE INDEX",
    "DropStmt": "DROP INDEX",
    "ReindexStmt": "REINDEX",
    "VacuumStmt": "VACUUM",
    "AlterSystemStmt": "ALTER SYSTEM",
    "CreatedbStmt": "CREATE DATABASE",
    "DropdbStmt": "DROP DATABASE",
    "AlterDatabaseStmt": "ALTER DATABASE SET TABLESPACE",
    "CreateTableSpaceStmt": "CREATE TABLESPACE",
    "DropTableSpaceStmt": "DROP TABLESPACE",
    "CreateSubscriptionStmt": "CREATE SUBSCRIPTION",
    "DropSubscriptionStmt": "DROP SUBSCRIPTION",
}


@dataclass(frozen=True)
class Statement:
    """One statement: its text, its character offset in the script and its kind."""

    text: str
    offset: int
    kind: str
    concurrent: bool = False  # CREATE/DROP INDEX or REINDEX ... CONCURRENTLY
    tables: tuple[str, ...] = ()  # relations it names, its target first ("schema.name" or "name")
    index_name: str | None = None  # CREATE INDEX: the index's name, schema-qualified as written
    breaking: tuple[Break, ...] = ()  # changes the release still running may not survive
    adds: tuple[tuple[str, str], ...] = ()  # (table, column) the statement adds

    @property
    def first_line(self) -> str:
        """Its first non-blank line, at most 120 characters: how findings and runbooks
        quote it."""
        return next((x.strip() for x in self.text.strip().splitlines() if x.strip()), "")[:120]


@dataclass(frozen=True)
class Script:
    """A parsed migration script."""

    text: str
    statements: tuple[Statement, ...]
    transactional: bool
    reason: str | None  # why it cannot run in one transaction
    parse_error: str | None = None  # pglast could not parse it: the server will judge
    parse_error_at: int | None = None  # where (a 0-based character index), when pglast says


def analyse(text: str) -> Script:
    """Split ``text`` and decide whether it can run in one transaction.

    A script pglast cannot parse (a syntax error, or syntax newer than pglast)
    runs whole in one transaction: the server reports any error precisely, and a
    transaction leaves nothing half-done.
    """
    from pglast import parser  # noqa: PLC0415 (pglast is imported only when SQL must be parsed)

    try:
        tree = json.loads(parser.parse_sql_json(text))
    except parser.ParseError as exc:
        return _unparsed(text, exc)
    encoded = text.encode("utf-8")
    statements: list[Statement] = []
    reason: str | None = None
    # pglast gives byte offsets: turn them into character offsets in one pass (decoding
    # each gap once), never by decoding the whole prefix per statement
    byte_at, char_at = 0, 0
    for raw in tree.get("stmts", []):
        start = raw.get("stmt_location", 0)
        char_at += len(encoded[byte_at:start].decode("utf-8"))
        byte_at = start
        statement, why = _statement(raw, encoded, char_at)
        statements.append(statement)
        reason = reason or why
    return Script(
        text=text,
        statements=tuple(statements),
        transactional=reason is None,
        reason=reason,
    )


def _unparsed(text: str, exc: Exception) -> Script:
    """The whole of ``text`` as one statement, with where pglast stopped."""
    whole = Statement(text=text, offset=0, kind="unparsed")
    detail = str(exc.args[0]) if exc.args else str(exc)  # without ", at index N"
    at = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
    return Script(
        text, (whole,), transactional=True, reason=None, parse_error=detail, parse_error_at=at
    )


def _statement(raw: dict[str, Any], encoded: bytes, offset: int) -> tuple[Statement, str | None]:
    """One of pglast's statements (``raw``), at character ``offset``; and why it cannot
    run in a transaction, if it cannot."""
    node = raw["stmt"]
    kind = next(iter(node))
    start = raw.get("stmt_location", 0)
    length = raw.get("stmt_len", 0) or len(encoded) - start
    chunk = encoded[start : start + length].decode("utf-8")
    why = _outside_transaction_reason(kind, node[kind])
    concurrent = why is not None and "CONCURRENTLY" in why
    statement = Statement(
        chunk,
        offset,
        kind,
        concurrent,
        relations(node),
        _index_name(kind, node),
        breaking(kind, node[kind]),
        added_columns(kind, node[kind]),
    )
    return statement, why


def position_to_line_column(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of the 1-based character ``position`` in ``text``."""
    before = text[: max(position - 1, 0)]
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    return line, column


def relations(node: object) -> tuple[str, ...]:
    """The relations a parse tree names, in order of appearance, without repeats.

    A RangeVar (pglast's JSON: a dict with ``relname``) anywhere in the tree, and the
    objects of DROP TABLE/INDEX/VIEW, which name theirs as lists of strings.
    """
    found: dict[str, None] = {}

    def walk(item: object) -> None:
        if isinstance(item, list):
            for child in item:
                walk(child)
            return
        if not isinstance(item, dict):
            return
        if "relname" in item:
            schema = item.get("schemaname")
            found[f"{schema}.{item['relname']}" if schema else str(item["relname"])] = None
        drop = item.get("DropStmt")
        if isinstance(drop, dict) and drop.get("removeType") in _DROPPED_RELATIONS:
            for obj in drop.get("objects") or []:
                parts = [
                    i.get("String", {}).get("sval") for i in obj.get("List", {}).get("items", [])
                ]
                if parts and all(parts):
                    found[".".join(str(p) for p in parts)] = None
        for child in item.values():
            walk(child)

    walk(node)
    return tuple(found)


_DROPPED_RELATIONS = frozenset(
    {"OBJECT_TABLE", "OBJECT_INDEX", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_SEQUENCE"}
)


@dataclass(frozen=True)
class Break:
    """A change the release still running against the old schema may not survive."""

    text: str  # "DROP COLUMN public.users.name", as an operator reads it
    table: str
    column: str | None = None
    change: str = ""  # drop-column, set-not-null, type, rename-column, rename-table, ...


def breaking(kind: str, node: dict[str, Any]) -> tuple[Break, ...]:
    """What in one statement breaks the release still running against the old schema:
    dropped or renamed tables and columns, new NOT NULL constraints, type changes, renamed
    enum values, a required column without a default (the old code's INSERTs lack it)."""
    table = _relname(node.get("relation"))
    if kind == "AlterTableStmt":
        return tuple(
            b
            for item in node.get("cmds") or []
            if (b := _breaking_command(table, item.get("AlterTableCmd", {}))) is not None
        )
    if kind == "RenameStmt" and node.get("renameType") in ("OBJECT_COLUMN", "OBJECT_TABLE"):
        if node["renameType"] == "OBJECT_COLUMN":
            old = node.get("subname")
            text = f"RENAME COLUMN {table}.{old} TO {node.get('newname')}"
            return (Break(text, table, old, "rename-column"),)
        return (
            Break(f"RENAME TABLE {table} TO {node.get('newname')}", table, None, "rename-table"),
        )
    if kind == "DropStmt" and node.get("removeType") in ("OBJECT_TABLE", "OBJECT_VIEW"):
        label = "TABLE" if node["removeType"] == "OBJECT_TABLE" else "VIEW"
        return tuple(
            Break(f"DROP {label} {name}", name, None, "drop-table")
            for name in (
                _dotted(o.get("List", {}).get("items", [])) for o in node.get("objects") or []
            )
        )
    if kind == "AlterEnumStmt" and node.get("oldVal"):
        enum = _dotted(node.get("typeName") or [])
        return (Break(f"RENAME VALUE {node['oldVal']!r} of enum {enum}", enum, None, "enum"),)
    return ()


def added_columns(kind: str, node: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """(table, column) of every column an ALTER TABLE adds."""
    if kind != "AlterTableStmt":
        return ()
    table = _relname(node.get("relation"))
    return tuple(
        (table, str(cmd["def"]["ColumnDef"].get("colname")))
        for item in node.get("cmds") or []
        if (cmd := item.get("AlterTableCmd", {})).get("subtype") == "AT_AddColumn"
        and "ColumnDef" in (cmd.get("def") or {})
    )


def _breaking_command(table: str, cmd: dict[str, Any]) -> Break | None:
    subtype, column = cmd.get("subtype"), cmd.get("name")
    if subtype == "AT_DropColumn":
        return Break(f"DROP COLUMN {table}.{column}", table, column, "drop-column")
    if subtype == "AT_SetNotNull":
        return Break(f"SET NOT NULL on {table}.{column}", table, column, "set-not-null")
    if subtype == "AT_AlterColumnType":
        return Break(f"type change of {table}.{column}", table, column, "type")
    if subtype == "AT_AddColumn":
        definition = cmd.get("def", {}).get("ColumnDef", {})
        kinds = {
            c.get("Constraint", {}).get("contype") for c in definition.get("constraints") or []
        }
        needs_value = "CONSTR_NOTNULL" in kinds and not kinds & {
            "CONSTR_DEFAULT",
            "CONSTR_IDENTITY",
            "CONSTR_GENERATED",
        }
        if needs_value:
            name = definition.get("colname")
            text = f"ADD COLUMN {table}.{name} NOT NULL without a default"
            return Break(text, table, name, "required-column")
    return None


def _dotted(items: list[Any]) -> str:
    return ".".join(str(i.get("String", {}).get("sval", "")) for i in items)


def _relname(relation: object) -> str:
    if not isinstance(relation, dict):
        return "?"
    schema = relation.get("schemaname")
    return f"{schema}.{relation.get('relname')}" if schema else str(relation.get("relname"))


def _index_name(kind: str, node: dict[str, object]) -> str | None:
    if kind != "IndexStmt":
        return None
    stmt = node[kind]
    assert isinstance(stmt, dict)  # noqa: S101 (pglast's JSON)
    name = stmt.get("idxname")
    if not name:
        return None
    relation = stmt.get("relation") or {}
    schema = relation.get("schemaname") if isinstance(relation, dict) else None
    return f'"{schema}"."{name}"' if schema else f'"{name}"'


def _outside_transaction_reason(kind: str, node: dict[str, object]) -> str | None:
    if kind == "TransactionStmt":
        return "it manages its own transactions (BEGIN/COMMIT)"
    concurrent = (kind in ("IndexStmt", "DropStmt") and bool(node.get("concurrent"))) or (
        kind == "ReindexStmt" and _has_option(node, "concurrently")
    )
    refused = (
        concurrent
        or kind in _NEVER_IN_TRANSACTION
        or (kind == "VacuumStmt" and bool(node.get("is_vacuumcmd")))
        or (kind == "AlterDatabaseStmt" and _has_option(node, "tablespace"))
    )
    if not refused:
        return None
    label = _LABELS.get(kind, kind.removesuffix("Stmt"))
    return f"{label}{' CONCURRENTLY' if concurrent else ''} cannot run in a transaction block"


def _has_option(node: dict[str, object], name: str) -> bool:
    params = node.get("params") or node.get("options") or []
    assert isinstance(params, list)  # noqa: S101 (pglast's JSON: a list of DefElem nodes)
    return any(p.get("DefElem", {}).get("defname") == name for p in params)
