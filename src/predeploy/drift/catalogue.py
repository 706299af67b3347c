"""Reading a fingerprint from the server: one query per object kind over pg_catalog.

All queries are sent in one round trip inside a read-only repeatable-read transaction
with ``search_path = pg_catalog`` (and the settings that shape deparsed constants
pinned), so that the deparsed definitions (pg_get_viewdef, pg_get_indexdef,
pg_get_functiondef, format_type, ...) read the same whoever connects. System schemas,
objects that belong to an extension and the excluded tables (predeploy's history and
audit tables, with their columns, indexes, constraints, triggers, policies, comments and
owned sequences) are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from predeploy.db.catalog import blocked_by
from predeploy.db.connect import Conn
from predeploy.drift.fingerprint import KINDS, Fingerprint
from predeploy.errors import Blocked

__all__ = ["take"]

_DEFAULT_LOCK_TIMEOUT = "5s"  # a catalogue read never waits forever behind a migration's lock


_QUERIES: dict[str, str] = {  # one per kind (or family of kinds), composed with _FRAGMENTS
    "schema": """
SELECT 'schema', quote_ident(n.nspname), '{{}}'::json FROM pg_namespace n
WHERE {user_schema} AND {not_member_n}""",
    "extension": """
SELECT 'extension', quote_ident(x.extname),
       json_build_object('schema', quote_ident(n.nspname), 'version', x.extversion)
FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace""",
    "collation": """
SELECT 'collation', quote_ident(n.nspname) || '.' || quote_ident(co.collname),
  to_jsonb(co) - 'oid' - 'collname' - 'collnamespace' - 'collowner' - 'collversion'
FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace
WHERE {user_schema} AND {not_member_co}""",
    "type": """
SELECT CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain'
                      WHEN 'c' THEN 'composite type' ELSE 'range type' END,
  quote_ident(n.nspname) || '.' || quote_ident(t.typname),
  CASE t.typtype
  WHEN 'e' THEN json_build_object('labels', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder)
                                             FROM pg_enum e WHERE e.enumtypid = t.oid))
  WHEN 'd' THEN json_build_object(
    'base', format_type(t.typbasetype, t.typtypmod), 'not_null', t.typnotnull,
    'default', pg_get_expr(t.typdefaultbin, 0),
    'collation', (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
                  FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                  JOIN pg_type b ON b.oid = t.typbasetype
                  WHERE co.oid = t.typcollation AND t.typcollation <> b.typcollation),
    'constraints', (SELECT json_agg(quote_ident(k.conname) || ' ' || pg_get_constraintdef(k.oid)
                                    ORDER BY k.conname)
                    FROM pg_constraint k WHERE k.contypid = t.oid AND k.contype = 'c'))
  WHEN 'c' THEN json_build_object('attributes', (
    SELECT json_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
                    || CASE WHEN a.attcollation <> at.typcollation
                       THEN ' COLLATE ' || quote_ident(cn.nspname) || '.'
                            || quote_ident(co.collname)
                       ELSE '' END ORDER BY a.attnum)
    FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
    LEFT JOIN pg_collation co ON co.oid = a.attcollation
    LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
    WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
  ELSE json_build_object(
    'subtype', format_type(r.rngsubtype, NULL),
    'opclass', (SELECT quote_ident(on_.nspname) || '.' || quote_ident(oc.opcname)
                FROM pg_opclass oc JOIN pg_namespace on_ ON on_.oid = oc.opcnamespace
                WHERE oc.oid = r.rngsubopc),
    'collation', (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname)
                  FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                  WHERE co.oid = r.rngcollation),
    'canonical', nullif(r.rngcanonical::oid, 0)::regproc::text,
    'subdiff', nullif(r.rngsubdiff::oid, 0)::regproc::text)
  END
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_range r ON r.rngtypid = t.oid
WHERE {user_schema} AND {not_member_t}
  AND (t.typtype IN ('e', 'd', 'r')
       OR t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')""",
    "sequence": """{rel}
SELECT 'sequence', r.ident, json_build_object(
  'type', format_type(s.seqtypid, NULL), 'increment', s.seqincrement, 'minimum', s.seqmin,
  'maximum', s.seqmax, 'start', s.seqstart, 'cache', s.seqcache, 'cycle', s.seqcycle,
  'persistence', CASE r.relpersistence WHEN 'u' THEN 'unlogged' ELSE 'logged' END,
  'owned_by', o.ident || '.' || quote_ident(a.attname), 'table', o.ident,
  'identity', coalesce(d.deptype = 'i', false))
FROM rel r JOIN pg_sequence s ON s.seqrelid = r.oid
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = r.oid
  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
LEFT JOIN rel o ON o.oid = d.refobjid
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.objid IS NULL OR o.oid IS NOT NULL""",
    "function": """
SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
  p.oid::regprocedure::text,
  json_build_object(
    'schema', quote_ident(n.nspname), 'name', quote_ident(p.proname),
    'arguments', pg_get_function_identity_arguments(p.oid),
    'result', pg_get_function_result(p.oid),
    'definition', CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) ELSE
      'CREATE AGGREGATE ' || quote_ident(n.nspname) || '.' || quote_ident(p.proname)
      || '(' || pg_get_function_arguments(p.oid) || ') (' || concat_ws(', ',
        'SFUNC = ' || g.aggtransfn::text, 'STYPE = ' || format_type(g.aggtranstype, NULL),
        'SSPACE = ' || nullif(g.aggtransspace, 0),
        'FINALFUNC = ' || nullif(g.aggfinalfn::oid, 0)::regproc::text,
        CASE WHEN g.aggfinalextra THEN 'FINALFUNC_EXTRA' END,
        'COMBINEFUNC = ' || nullif(g.aggcombinefn::oid, 0)::regproc::text,
        'SERIALFUNC = ' || nullif(g.aggserialfn::oid, 0)::regproc::text,
        'DESERIALFUNC = ' || nullif(g.aggdeserialfn::oid, 0)::regproc::text,
        'INITCOND = ' || quote_literal(g.agginitval),
        'MSFUNC = ' || nullif(g.aggmtransfn::oid, 0)::regproc::text,
        'MINVFUNC = ' || nullif(g.aggminvtransfn::oid, 0)::regproc::text,
        'MSTYPE = ' || nullif(g.aggmtranstype, 0)::regtype::text,
        'MFINALFUNC = ' || nullif(g.aggmfinalfn::oid, 0)::regproc::text,
        'MINITCOND = ' || quote_literal(g.aggminitval),
        'SORTOP = ' || nullif(g.aggsortop, 0)::regoperator::text,
        CASE g.aggkind WHEN 'h' THEN 'HYPOTHETICAL' END,
        CASE p.proparallel WHEN 's' THEN 'PARALLEL = SAFE' WHEN 'r' THEN 'PARALLEL = RESTRICTED'
        END) || ')'
    END)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN pg_aggregate g ON g.aggfnoid = p.oid
WHERE {user_schema} AND {not_member_p}
  AND NOT EXISTS (SELECT FROM pg_depend xi WHERE xi.classid = 'pg_proc'::regclass
                  AND xi.objid = p.oid AND xi.deptype = 'i')""",
    "table": """{rel}
SELECT 'table', r.ident, json_build_object(
  'kind', CASE r.relkind WHEN 'p' THEN 'partitioned' WHEN 'f' THEN 'foreign' ELSE 'regular' END,
  'persistence', CASE r.relpersistence WHEN 'u' THEN 'unlogged' ELSE 'logged' END,
  'row_security', r.relrowsecurity, 'force_row_security', r.relforcerowsecurity,
  'partition_key', CASE WHEN r.relkind = 'p' THEN pg_get_partkeydef(r.oid) END,
  'partition_of', (SELECT quote_ident(pn.nspname) || '.' || quote_ident(p.relname)
                   FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                   JOIN pg_namespace pn ON pn.oid = p.relnamespace
                   WHERE i.inhrelid = r.oid AND r.relispartition),
  'partition_bound', CASE WHEN r.relispartition THEN pg_get_expr(r.relpartbound, r.oid) END,
  'inherits', (SELECT json_agg(quote_ident(pn.nspname) || '.' || quote_ident(p.relname)
                               ORDER BY i.inhseqno)
               FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
               JOIN pg_namespace pn ON pn.oid = p.relnamespace
               WHERE i.inhrelid = r.oid AND NOT r.relispartition),
  'options', (SELECT json_agg(o ORDER BY o) FROM unnest(r.reloptions) AS o),
  'replica_identity', CASE r.relreplident WHEN 'n' THEN 'nothing' WHEN 'f' THEN 'full'
                      WHEN 'i' THEN 'index' ELSE 'default' END,
  'access_method', (SELECT amname FROM pg_am WHERE oid = r.relam))
FROM rel r WHERE r.relkind IN ('r', 'p', 'f')""",
    "column": """{rel}
SELECT 'column', r.ident || '.' || quote_ident(a.attname), json_build_object(
  'table', r.ident, 'name', quote_ident(a.attname), 'position', a.attnum,
  'inherited', NOT a.attislocal,
  'type', format_type(a.atttypid, a.atttypmod), 'not_null', a.attnotnull,
  'default', CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
  'generated', CASE WHEN a.attgenerated <> '' THEN
                 'GENERATED ALWAYS AS (' || pg_get_expr(d.adbin, d.adrelid) || ')'
                 || CASE a.attgenerated WHEN 'v' THEN ' VIRTUAL' ELSE ' STORED' END END,
  'identity', CASE a.attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' END,
  'collation', CASE WHEN a.attcollation <> t.typcollation
               THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END,
  'storage', CASE a.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL' WHEN 'm' THEN 'MAIN'
             ELSE 'EXTENDED' END,
  'compression', CASE a.attcompression WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' END,
  'statistics', CASE WHEN a.attstattarget >= 0 THEN a.attstattarget END)
FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
WHERE r.relkind IN ('r', 'p', 'f')""",
    "constraint": """{rel}
SELECT 'constraint', quote_ident(k.conname) || ' on ' || r.ident, json_build_object(
  'table', r.ident, 'name', quote_ident(k.conname),
  'type', CASE k.contype WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique' WHEN 'c' THEN 'check'
          WHEN 'f' THEN 'foreign key' ELSE 'exclusion' END,
  'definition', pg_get_constraintdef(k.oid), 'inherited', NOT k.conislocal)
FROM pg_constraint k JOIN rel r ON r.oid = k.conrelid
WHERE k.contype IN ('p', 'u', 'c', 'f', 'x') AND k.conparentid = 0""",
    "index": """{rel}
SELECT 'index', quote_ident(n.nspname) || '.' || quote_ident(ic.relname), json_build_object(
  'table', r.ident, 'name', quote_ident(ic.relname), 'partitioned', r.relkind = 'p',
  'definition', pg_get_indexdef(i.indexrelid), 'valid', i.indisvalid,
  'attached_to', (SELECT quote_ident(pn.nspname) || '.' || quote_ident(p.relname)
                  FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent
                  JOIN pg_namespace pn ON pn.oid = p.relnamespace
                  WHERE h.inhrelid = i.indexrelid))
FROM pg_index i JOIN rel r ON r.oid = i.indrelid
JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
WHERE NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid
                  AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))""",
    "statistics": """{rel}
SELECT 'statistics', quote_ident(n.nspname) || '.' || quote_ident(s.stxname), json_build_object(
  'table', r.ident, 'name', quote_ident(s.stxname),
  'definition', pg_get_statisticsobjdef(s.oid))
FROM pg_statistic_ext s JOIN rel r ON r.oid = s.stxrelid
JOIN pg_namespace n ON n.oid = s.stxnamespace""",
    "view": """{rel}
SELECT CASE r.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END, r.ident,
  json_build_object('definition', pg_get_viewdef(r.oid),
                    'options', (SELECT json_agg(o ORDER BY o) FROM unnest(r.reloptions) AS o))
FROM rel r WHERE r.relkind IN ('v', 'm')""",
    "trigger": """{rel}
SELECT 'trigger', quote_ident(t.tgname) || ' on ' || r.ident, json_build_object(
  'table', r.ident, 'name', quote_ident(t.tgname), 'definition', pg_get_triggerdef(t.oid),
  'enabled', CASE t.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA'
             WHEN 'A' THEN 'ENABLE ALWAYS' ELSE 'ENABLE' END)
FROM pg_trigger t JOIN rel r ON r.oid = t.tgrelid
WHERE NOT t.tgisinternal AND t.tgparentid = 0""",
    "rule": """{rel}
SELECT 'rule', quote_ident(w.rulename) || ' on ' || r.ident, json_build_object(
  'table', r.ident, 'name', quote_ident(w.rulename), 'definition', pg_get_ruledef(w.oid),
  'enabled', CASE w.ev_enabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA'
             WHEN 'A' THEN 'ENABLE ALWAYS' ELSE 'ENABLE' END)
FROM pg_rewrite w JOIN rel r ON r.oid = w.ev_class WHERE w.rulename <> '_RETURN'""",
    "policy": """{rel}
SELECT 'policy', quote_ident(p.polname) || ' on ' || r.ident, json_build_object(
  'table', r.ident, 'name', quote_ident(p.polname),
  'command', CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
             WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
  'permissive', p.polpermissive,
  'roles', (SELECT json_agg(x.name ORDER BY x.name) FROM (
              SELECT CASE WHEN u.role = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(u.role))
                     END AS name FROM unnest(p.polroles) AS u(role)) AS x),
  'using', pg_get_expr(p.polqual, p.polrelid),
  'check', pg_get_expr(p.polwithcheck, p.polrelid))
FROM pg_policy p JOIN rel r ON r.oid = p.polrelid""",
    "event trigger": """
SELECT 'event trigger', quote_ident(e.evtname), json_build_object(
  'event', e.evtevent, 'function', e.evtfoid::regproc::text,
  'enabled', CASE e.evtenabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA'
             WHEN 'A' THEN 'ENABLE ALWAYS' ELSE 'ENABLE' END,
  'tags', (SELECT json_agg(o ORDER BY o) FROM unnest(e.evttags) AS o))
FROM pg_event_trigger e WHERE {not_member_e}""",
    "comment": """{rel}
SELECT 'comment', o.type || ' ' || o.identity, json_build_object(
  'object_type', o.type, 'identity', o.identity, 'text', d.description,
  'table', CASE d.classoid
    WHEN 'pg_class'::regclass THEN (SELECT ident FROM rel WHERE oid = coalesce(
      (SELECT indrelid FROM pg_index WHERE indexrelid = d.objoid), d.objoid))
    WHEN 'pg_constraint'::regclass THEN (SELECT r.ident FROM pg_constraint k
      JOIN rel r ON r.oid = k.conrelid WHERE k.oid = d.objoid)
    WHEN 'pg_trigger'::regclass THEN (SELECT r.ident FROM pg_trigger t
      JOIN rel r ON r.oid = t.tgrelid WHERE t.oid = d.objoid)
    WHEN 'pg_policy'::regclass THEN (SELECT r.ident FROM pg_policy p
      JOIN rel r ON r.oid = p.polrelid WHERE p.oid = d.objoid)
    WHEN 'pg_rewrite'::regclass THEN (SELECT r.ident FROM pg_rewrite w
      JOIN rel r ON r.oid = w.ev_class WHERE w.oid = d.objoid)
  END)
FROM pg_description d, LATERAL pg_identify_object(d.classoid, d.objoid, d.objsubid) AS o
WHERE (d.objoid >= 16384 OR d.classoid = 'pg_namespace'::regclass)  -- initdb's are below
  AND d.classoid IN ('pg_class'::regclass, 'pg_proc'::regclass, 'pg_type'::regclass,
    'pg_namespace'::regclass, 'pg_constraint'::regclass, 'pg_trigger'::regclass,
    'pg_policy'::regclass, 'pg_rewrite'::regclass, 'pg_event_trigger'::regclass)
  AND (d.classoid <> 'pg_class'::regclass OR d.objoid IN (SELECT oid FROM rel))
  AND (o.schema IS NULL OR o.schema !~ '^pg_' AND o.schema <> 'information_schema')
  AND NOT (o.type = 'schema' AND (o.identity ~ '^pg_' OR o.identity = 'information_schema'))
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = d.classoid
                  AND e.objid = d.objoid AND e.deptype = 'e')""",
}


def _not_member(catalog: str, alias: str) -> sql.Composable:
    """Not a member of an extension (pg_depend's deptype 'e')."""
    return sql.SQL(
        "NOT EXISTS (SELECT FROM pg_depend xd WHERE xd.classid = {}::regclass"
        " AND xd.objid = {}.oid AND xd.deptype = 'e')"
    ).format(sql.Literal(catalog), sql.Identifier(alias))


_USER_SCHEMA = sql.SQL("n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'")
# The user's relations of every relkind: in a user schema, not an extension's, not excluded.
_REL = sql.SQL("""WITH rel AS (
  SELECT c.*, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS ident
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid >= 16384 AND {user_schema} AND {not_member}
    AND NOT EXISTS (SELECT FROM unnest(%(xs)s::text[], %(xt)s::text[]) AS x(s, t)
                    WHERE x.s = n.nspname AND x.t = c.relname))
""").format(user_schema=_USER_SCHEMA, not_member=_not_member("pg_class", "c"))
_FRAGMENTS: dict[str, sql.Composable] = {
    "rel": _REL,
    "user_schema": _USER_SCHEMA,
    "not_member_n": _not_member("pg_namespace", "n"),
    "not_member_t": _not_member("pg_type", "t"),
    "not_member_co": _not_member("pg_collation", "co"),
    "not_member_p": _not_member("pg_proc", "p"),
    "not_member_e": _not_member("pg_event_trigger", "e"),
}
_COMPOSED = tuple(
    (sql.SQL(text).format(**_FRAGMENTS), "{rel}" in text) for text in _QUERIES.values()
)

# Deparsed names depend on search_path, deparsed constants on these (a role may carry its own
# with ALTER ROLE ... SET): pinned for the snapshot, so every login role reads the same text.
_PIN_SETTINGS = """
SELECT set_config('search_path', 'pg_catalog', true), set_config('TimeZone', 'UTC', true),
       set_config('DateStyle', 'ISO, YMD', true), set_config('IntervalStyle', 'postgres', true),
       set_config('extra_float_digits', '1', true), set_config('bytea_output', 'hex', true),
       set_config('standard_conforming_strings', 'on', true), set_config('lc_monetary', 'C', true)
"""
_SERVER = "SELECT current_setting('server_version_num')::int, current_setting('server_version')"


def take(conn: Conn, *, exclude: Iterable[tuple[str, str]]) -> Fingerprint:
    """The fingerprint of ``conn``'s database, without the ``(schema, table)`` pairs of ``exclude``.

    ``conn`` must be outside a transaction (it is left as it was). Everything is read
    in one read-only snapshot with ``search_path = pg_catalog``, in one round trip.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("catalogue.take needs a connection outside a transaction")
    pairs = list(exclude)
    params = {"xs": [s for s, _ in pairs], "xt": [t for _, t in pairs]}
    objects: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
    autocommit = conn.autocommit
    conn.autocommit = True  # our own transaction, with its own characteristics
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            server, rows = _read(conn, params)
        finally:
            conn.execute("ROLLBACK")
    except pg_errors.LockNotAvailable:
        raise Blocked(
            f"reading the catalogue waited too long for a lock: {blocked_by(conn)}"
        ) from None
    finally:
        conn.autocommit = autocommit
    for kind, name, fields in rows:
        objects[kind][name] = fields
    return Fingerprint(
        server_major=server[0] // 10000,
        server_version=str(server[1]).split()[0],
        database=conn.info.dbname,
        objects=objects,
    )


def _read(
    conn: Conn, params: dict[str, list[str]]
) -> tuple[tuple[Any, ...], list[tuple[str, str, dict[str, Any]]]]:
    """The server version and every object row, all queries sent in one pipeline."""
    with conn.pipeline():
        conn.execute(_PIN_SETTINGS)
        conn.execute(
            "SELECT CASE WHEN current_setting('lock_timeout') = '0'"
            " THEN set_config('lock_timeout', %s, true) END",
            (_DEFAULT_LOCK_TIMEOUT,),
        )
        version = conn.execute(_SERVER)
        cursors = [
            conn.execute(query, params if with_params else None, prepare=False)
            for query, with_params in _COMPOSED
        ]
        server = version.fetchone()
        rows = [row for cur in cursors for row in cur.fetchall()]
    assert server is not None  # noqa: S101 (SELECT without FROM returns a row)
    return server, rows
