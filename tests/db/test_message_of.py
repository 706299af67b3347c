"""db.failures.message_of: the server's primary message, one line, from real server errors."""

from __future__ import annotations

import psycopg
import pytest

from predeploy.db.failures import message_of


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("SELECT * FROM no_such_table", 'relation "no_such_table" does not exist'),
        ("SELECT 1/0", "division by zero"),
        # a DETAIL and a HINT follow on lines of their own in str(exc): not in the message
        (
            "DO $$ BEGIN RAISE EXCEPTION 'first' USING DETAIL = 'd', HINT = 'h'; END $$",
            "first",
        ),
    ],
)
def test_the_primary_message_of_a_server_error(
    database_url: str, statement: str, expected: str
) -> None:
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        pytest.raises(psycopg.Error) as caught,
    ):
        conn.execute(statement)
    assert message_of(caught.value) == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (OSError("no route\nsecond line"), "no route"),  # not the server's: its first line
        (ValueError(""), "ValueError"),  # nothing said: its kind
        (psycopg.OperationalError("  lost  "), "lost"),  # a client-side psycopg error
    ],
)
def test_other_errors_give_their_first_line(exc: BaseException, expected: str) -> None:
    assert message_of(exc) == expected


def test_a_primary_message_of_several_lines_is_kept_whole(database_url: str) -> None:
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        pytest.raises(psycopg.Error) as caught,
    ):
        conn.execute("DO $$ BEGIN RAISE EXCEPTION E'first line\\nsecond line'; END $$")
    assert message_of(caught.value) == "first line\nsecond line"
