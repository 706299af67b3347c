"""Splitting and classifying SQL with pglast."""

from __future__ import annotations

import pytest

from predeploy.migrate.sqlscript import analyse, position_to_line_column


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE INDEX CONCURRENTLY i ON t (a);",
        "DROP INDEX CONCURRENTLY i;",
        "REINDEX INDEX CONCURRENTLY i;",
        "VACUUM t;",
        "VACUUM (ANALYZE) t;",
        "ALTER SYSTEM SET work_mem = '8MB';",
        "CREATE DATABASE x;",
        "DROP DATABASE x;",
        "BEGIN; CREATE TABLE t (a int); COMMIT;",
        "START TRANSACTION; SET LOCAL lock_timeout = '1s'; COMMIT;",
    ],
)
def test_statements_that_cannot_run_in_a_transaction(sql: str) -> None:
    """These run statement by statement, outside a transaction."""
    script = analyse(sql)
    assert not script.transactional
    assert script.reason


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE INDEX i ON t (a);",
        "ANALYZE t;",
        "ALTER TYPE mood ADD VALUE 'meh';",
        "DO $$ BEGIN PERFORM 1; END $$;",
        "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql;",
        "SELECT 'BEGIN; COMMIT;';",
    ],
)
def test_statements_that_run_in_a_transaction(sql: str) -> None:
    """Everything else runs in one transaction."""
    assert analyse(sql).transactional


def test_statements_keep_their_offsets_with_non_ascii_text() -> None:
    """Offsets are characters, also after multi-byte text."""
    sql = "SELECT 'héllo';\n-- ü\nCREATE INDEX CONCURRENTLY i ON t (a)"
    script = analyse(sql)
    assert [s.kind for s in script.statements] == ["SelectStmt", "IndexStmt"]
    second = script.statements[1]
    assert sql[second.offset : second.offset + len(second.text)] == second.text
    assert second.text == "CREATE INDEX CONCURRENTLY i ON t (a)"
    assert second.concurrent


def test_unparsable_script_runs_whole_in_a_transaction() -> None:
    """pglast's parse error is not ours to judge: the server will report it precisely."""
    script = analyse("SELECT 1; SELEC 2;")
    assert script.transactional
    assert script.parse_error
    assert len(script.statements) == 1


def test_position_to_line_column() -> None:
    """Server positions (1-based characters) become line and column."""
    text = "SELECT 1;\nSELECT\n  nope;"
    assert position_to_line_column(text, text.index("nope") + 1) == (3, 3)
    assert position_to_line_column(text, 1) == (1, 1)
