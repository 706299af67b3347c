"""A database with data worth backing up: real, hard-to-compress rows and a little schema."""

from __future__ import annotations

import psycopg

__all__ = ["fill", "grow"]


def fill(url: str, rows: int = 2000) -> None:
    """Two tables of real, hard-to-compress data and a little schema."""
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, body text NOT NULL)")
        conn.execute(
            "INSERT INTO items SELECT g, md5(g::text) || md5((g * 7)::text) || md5(random()::text)"
            " FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, item int REFERENCES items)")
        conn.execute("INSERT INTO notes (item) SELECT id FROM items WHERE id % 10 = 0")
        conn.execute("CREATE VIEW item_count AS SELECT count(*) FROM items")


def grow(url: str, rows: int) -> None:
    """More incompressible rows, for failures that need a dump of some size."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO items SELECT g, md5(random()::text) || md5(random()::text)"
            " FROM generate_series(100000, 100000 + %s) g",
            (rows,),
        )
