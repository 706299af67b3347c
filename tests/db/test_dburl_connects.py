"""A URL in Prisma's dialect connects to a real PostgreSQL."""

from __future__ import annotations

import psycopg

from predeploy.config.dburl import parse_url

PRISMA_ONLY = ("schema", "pgbouncer", "sslaccept", "sslidentity", "sslpassword", "sslcert")


def test_pooler_url_with_prisma_parameters_connects(database_url: str) -> None:
    """?schema=public&connection_limit=1&pgbouncer=true connects through psycopg."""
    url = parse_url(
        f"{database_url}?schema=public&connection_limit=1&pgbouncer=true",
        "DATABASE_URL",
        environ={},
    )
    params = url.connect_params()
    assert not set(PRISMA_ONLY) & set(params)
    with psycopg.connect(**params) as conn:  # type: ignore[arg-type]
        row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    assert row[0] == url.database
