"""Lint's shared cases: one known-dangerous statement per migration, and the tables they
touch (for the in-process tests in tests/db and the subprocess ones in tests/cli)."""

from __future__ import annotations

import threading
import time

import psycopg

__all__ = ["DANGEROUS", "hold", "make_events", "wait_idle_in_transaction"]

# one known-dangerous statement per migration: the rule squawk names, our base severity
DANGEROUS = {
    "1_index": (
        "CREATE INDEX events_at ON events (at);",
        "require-concurrent-index-creation",
        "warning",
    ),
    "2_type": (
        "ALTER TABLE events ALTER COLUMN body TYPE varchar(10);",
        "changing-column-type",
        "warning",
    ),
    "3_required": (
        "ALTER TABLE events ADD COLUMN n bigint NOT NULL;",
        "adding-required-field",
        "warning",
    ),
    "4_fk": (
        "ALTER TABLE events ADD CONSTRAINT events_user"
        " FOREIGN KEY (user_id) REFERENCES users (id);",
        "adding-foreign-key-constraint",
        "warning",
    ),
    "5_rename": ("ALTER TABLE events RENAME COLUMN body TO text;", "renaming-column", "warning"),
    "6_drop_db": ("DROP DATABASE analytics;", "ban-drop-database", "error"),
    "7_int": ("CREATE TABLE counters (n bigint, at timestamp);", "prefer-timestamp-tz", "info"),
}


def make_events(url: str) -> str:
    """Tables users and events (5,000 rows, analysed) in ``url``'s database; ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (id bigint PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE events AS SELECT g::bigint AS id, now() AS at, 'x'::text AS body,"
            " 1::bigint AS user_id FROM generate_series(1, 5000) g"
        )
        conn.execute("ANALYZE events")
    return url


def hold(url: str, sql: str, ready: threading.Event, release: threading.Event) -> None:
    """A session of 'reporting' that ran ``sql`` and sits idle in its transaction until
    ``release`` (``ready`` once it ran)."""
    with psycopg.connect(url, application_name="reporting") as conn:
        conn.execute(sql)
        ready.set()
        release.wait(30)


def wait_idle_in_transaction(url: str, application: str = "reporting") -> None:
    """Until pg_stat_activity shows ``application``'s session idle in transaction (10 s)."""
    deadline = time.monotonic() + 10
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT 1 FROM pg_stat_activity"
                " WHERE application_name = %s AND state = 'idle in transaction'",
                (application,),
            ).fetchone()
            if row is not None:
                return
            conn.execute("SELECT pg_stat_clear_snapshot()")
            time.sleep(0.02)
    raise AssertionError(f"no session of {application} idle in transaction after 10 s")
