"""The objects a restore must drop first: everything the live database has and the backup lacks.

`pg_restore --clean` drops and recreates only the archive's own objects, and without
CASCADE: a table created after the backup with a foreign key to an older one makes the
older one's primary key impossible to drop, and a type, function, sequence or view created
since survives the restore (re-running the migration then fails on "already exists").

So before the archive is replayed, in the same transaction, every object the archive does
not have is dropped with CASCADE: schemas, extensions, relations (tables, views,
materialized views, sequences, foreign tables), types and domains, routines, collations,
text search configurations and dictionaries, and constraints. A cascade can only reach
objects that depend on a newer one; those that are in the archive are recreated by the
replay. Extension members, identity sequences (part of their table), the system schemas,
the ``public`` schema itself and the tables a restore keeps (the audit trail) are never
dropped, nor is a schema that holds a kept table (Prisma's ``?schema=`` puts the audit
table there): its other contents are dropped one by one instead, and the replay neither
drops nor recreates it (``standing``).

A schema's archive (``pg_dump --schema``, a schema-per-tenant target's backup) stands for
that schema alone: only the schema and the objects in it are compared and dropped; other
schemas and the extensions are out of its reach.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from predeploy.db.connect import Conn

__all__ = ["Extra", "belongs_to", "extras", "replayed", "standing", "toc_entries", "toc_line"]

# `pg_restore --list`: "215; 1259 16386 TABLE public users owner"; the kind may be several
# words, the tag may hold spaces ("users users_pkey", "f(integer, text)"), the owner is one
# word or empty
_TOC_LINE = re.compile(r"^\d+; \d+ \d+ (?P<rest>.+)$")
_KINDS = (
    "MATERIALIZED VIEW DATA",
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "TABLE DATA",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "MATERIALIZED VIEW",
    "FOREIGN TABLE",
    "FK CONSTRAINT",
    "CONSTRAINT",
    "COLLATION",
    "EXTENSION",
    "PROCEDURE",
    "AGGREGATE",
    "FUNCTION",
    "SEQUENCE",
    "DOMAIN",
    "SCHEMA",
    "TABLE",
    "TYPE",
    "VIEW",
    "DEFAULT",
    "INDEX",
    "TRIGGER",
    "POLICY",
    "RULE",
    "ACL",
)
_DATA = ("MATERIALIZED VIEW DATA", "SEQUENCE OWNED BY", "SEQUENCE SET", "TABLE DATA")
_SYSTEM = "('pg_catalog', 'information_schema', 'pg_toast')"
_NOT_EXTENSION = """NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = @1::regclass
                AND d.objid = @2 AND d.deptype = 'e')"""


def _filled(query: str) -> str:
    """A catalogue query with its shared conditions put in (constants only, no input)."""
    query = query.replace("@SYSTEM@", _SYSTEM)
    for catalog, oid in re.findall(r"@NOT_EXTENSION\(([^,]+),([^)]+)\)@", query):
        condition = _NOT_EXTENSION.replace("@1", catalog).replace("@2", oid)
        query = query.replace(f"@NOT_EXTENSION({catalog},{oid})@", condition)
    return query


# (kind as pg_dump names it, schema, tag as pg_dump writes it, DROP statement), per kind,
# in an order where each DROP ... CASCADE leaves nothing newer behind
_LIVE = {
    "SCHEMA": """
        SELECT 'SCHEMA', '-', n.nspname, format('DROP SCHEMA IF EXISTS %I CASCADE', n.nspname)
        FROM pg_namespace n
        WHERE n.nspname NOT IN @SYSTEM@ AND n.nspname <> 'public'
          AND n.nspname NOT LIKE 'pg\\_%%'
          AND @NOT_EXTENSION('pg_namespace',n.oid)@""",
    "EXTENSION": """
        SELECT 'EXTENSION', '-', e.extname, format('DROP EXTENSION IF EXISTS %I CASCADE', e.extname)
        FROM pg_extension e WHERE e.extname <> 'plpgsql'""",
    "RELATION": """
        SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                              WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                              ELSE 'TABLE' END,
               n.nspname, c.relname,
               format('DROP %s IF EXISTS %I.%I CASCADE',
                      CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                     WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                     ELSE 'TABLE' END, n.nspname, c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND NOT c.relispartition
          AND n.nspname NOT IN @SYSTEM@ AND n.nspname NOT LIKE 'pg\\_%%'
          AND @NOT_EXTENSION('pg_class',c.oid)@
          -- an identity column's sequence is part of its table (it cannot be dropped alone)
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = c.oid AND d.deptype = 'i')""",
    "TYPE": """
        SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, n.nspname, t.typname,
               format('DROP %s IF EXISTS %I.%I CASCADE',
                      CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, n.nspname, t.typname)
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typtype IN ('e', 'd', 'r', 'c')
          AND (t.typtype <> 'c'
               OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
          AND n.nspname NOT IN @SYSTEM@ AND n.nspname NOT LIKE 'pg\\_%%'
          AND @NOT_EXTENSION('pg_type',t.oid)@""",
    "ROUTINE": """
        SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE'
                              ELSE 'FUNCTION' END,
               n.nspname,
               p.proname || '(' || array_to_string(
                   ARRAY(SELECT format_type(a, NULL) FROM unnest(p.proargtypes) AS a), ', ') || ')',
               format('DROP %s IF EXISTS %I.%I(%s) CASCADE',
                      CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE'
                                     ELSE 'FUNCTION' END,
                      n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.prokind IN ('f', 'p', 'a', 'w')
          AND n.nspname NOT IN @SYSTEM@ AND n.nspname NOT LIKE 'pg\\_%%'
          AND @NOT_EXTENSION('pg_proc',p.oid)@""",
    "COLLATION": """
        SELECT 'COLLATION', n.nspname, c.collname,
               format('DROP COLLATION IF EXISTS %I.%I CASCADE', n.nspname, c.collname)
        FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace
        WHERE n.nspname NOT IN @SYSTEM@ AND n.nspname NOT LIKE 'pg\\_%%'
          AND @NOT_EXTENSION('pg_collation',c.oid)@""",
    "TEXT SEARCH": """
        SELECT 'TEXT SEARCH CONFIGURATION', n.nspname, c.cfgname,
               format('DROP TEXT SEARCH CONFIGURATION IF EXISTS %I.%I CASCADE',
                      n.nspname, c.cfgname)
        FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace
        WHERE n.nspname NOT IN @SYSTEM@ AND n.nspname NOT LIKE 'pg\\_%%'
          AND @NOT_EXTENSION('pg_ts_config',c.oid)@
        UNION ALL
        SELECT 'TEXT SEARCH DICTIONARY', n.nspname, t.dictname,
               format('DROP TEXT SEARCH DICTIONARY IF EXISTS %I.%I CASCADE',
                      n.nspname, t.dictname)
        FROM pg_ts_dict t JOIN pg_namespace n ON n.oid = t.dictnamespace
        WHERE n.nspname NOT IN @SYSTEM@ AND n.nspname NOT LIKE 'pg\\_%%'
          AND @NOT_EXTENSION('pg_ts_dict',t.oid)@""",
    "CONSTRAINT": """
        SELECT CASE c.contype WHEN 'f' THEN 'FK CONSTRAINT' ELSE 'CONSTRAINT' END,
               n.nspname, r.relname || ' ' || c.conname,
               format('ALTER TABLE IF EXISTS %I.%I DROP CONSTRAINT IF EXISTS %I CASCADE',
                      n.nspname, r.relname, c.conname)
        FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
        JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE c.contype IN ('f', 'p', 'u', 'x') AND NOT r.relispartition
          AND n.nspname NOT IN @SYSTEM@ AND n.nspname NOT LIKE 'pg\\_%%'
          AND @NOT_EXTENSION('pg_class',r.oid)@""",
}
# constraints first (a foreign key between two old tables, added since), then what holds
# data and code, then the containers
_ORDER = (
    "CONSTRAINT",
    "RELATION",
    "ROUTINE",
    "TYPE",
    "COLLATION",
    "TEXT SEARCH",
    "EXTENSION",
    "SCHEMA",
)


@dataclass(frozen=True)
class Extra:
    """A live object the backup does not have."""

    kind: str
    schema: str
    name: str
    drop: str

    def __str__(self) -> str:
        where = "" if self.schema == "-" else f"{self.schema}."
        return f"{self.kind.lower()} {where}{self.name}"


def toc_line(line: str) -> tuple[str, str, str] | None:
    """(kind, schema, tag) of one `pg_restore --list` line; None for comments and kinds
    predeploy does not need to know."""
    match = _TOC_LINE.match(line)
    if match is None:
        return None
    rest = match.group("rest")
    kind = next((k for k in _KINDS if rest.startswith(k + " ")), None)
    if kind is None:
        return None
    schema, _, tail = rest[len(kind) + 1 :].partition(" ")
    tag = tail.rsplit(" ", 1)[0] if " " in tail else tail
    return kind, schema, tag


def toc_entries(toc: str) -> set[tuple[str, str, str]]:
    """(kind, schema, tag) of every object (not data) in a `pg_restore --list`."""
    found = set()
    for line in toc.splitlines():
        entry = toc_line(line)
        if entry is not None and entry[0] not in _DATA:
            found.add(entry)
    return found


def belongs_to(schema: str, tag: str, table: tuple[str, str]) -> bool:
    """True when an entry (schema, tag) is ``table`` or one of its parts (its data, its
    sequence, its constraints, its defaults)."""
    owner_schema, name = table
    return schema == owner_schema and (tag == name or tag.startswith((name + " ", name + "_")))


def extras(
    conn: Conn,
    archive: set[tuple[str, str, str]],
    keep: Iterable[tuple[str, str]] = (),
    *,
    schema: str | None = None,
) -> list[Extra]:
    """The live objects ``archive`` lacks, in drop order; ``keep`` names (schema, table)
    pairs never to drop (with their sequences and constraints); ``schema``: a schema's
    archive, which stands for that schema alone (nothing elsewhere is looked at)."""
    kept, scope = set(keep), schema
    holding = {where for where, _ in kept}
    found = []
    with conn.transaction():
        conn.execute("SET LOCAL search_path = ''")  # format_type qualifies, as pg_dump's tags
        for group in _ORDER:
            rows = conn.execute(_filled(_LIVE[group])).fetchall()
            for kind, where, name, drop in rows:
                if not _in_scope(scope, kind, where, name):
                    continue
                if (kind, where, name) in archive or _kept(where, name, kept):
                    continue
                if kind == "SCHEMA" and name in holding:
                    continue  # it holds a kept table: its contents are dropped one by one
                found.append(Extra(kind, where, name, drop))
    return found


def _in_scope(scope: str | None, kind: str, schema: str, name: str) -> bool:
    """Whether a live object is in a restore's reach: everything for a whole database's
    archive, only ``scope`` and what is in it for a schema's (never an extension)."""
    if scope is None:
        return True
    return name == scope if kind == "SCHEMA" else schema == scope


def standing(conn: Conn, keep: Iterable[tuple[str, str]]) -> set[str]:
    """The schemas of the kept tables that exist: a restore must neither drop nor recreate
    them (the archive's DROP SCHEMA would fail on the kept table, and CREATE on the schema)."""
    names = sorted({schema for schema, _ in keep})
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (names,)
    ).fetchall()
    return {str(name) for (name,) in rows}


def replayed(toc: str, keep: Iterable[tuple[str, str]], standing: set[str]) -> str:
    """A `pg_restore --list` for `pg_restore -L`: without the kept tables (nor their parts)
    and without the schemas in ``standing`` (they hold a kept table: neither dropped nor
    created again)."""
    kept = set(keep)
    lines = []
    for line in toc.splitlines():
        entry = toc_line(line)
        if entry is not None:
            kind, schema, tag = entry
            if _kept(schema, tag, kept) or (kind == "SCHEMA" and tag in standing):
                continue
        elif _comment_on_kept(line, kept):  # the live one stays (a protected env's marker)
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def _comment_on_kept(line: str, kept: set[tuple[str, str]]) -> bool:
    """A `COMMENT schema TABLE name owner` entry on a kept table (it may not even exist)."""
    match = _TOC_LINE.match(line)
    rest = match.group("rest") if match is not None else ""
    if not rest.startswith("COMMENT "):
        return False
    schema, _, tail = rest.removeprefix("COMMENT ").partition(" ")
    what, _, named = tail.partition(" ")
    name = named.rsplit(" ", 1)[0] if " " in named else named
    return what == "TABLE" and (schema, name) in kept


def _kept(schema: str, name: str, kept: set[tuple[str, str]]) -> bool:
    return any(belongs_to(schema, name, table) for table in kept)
