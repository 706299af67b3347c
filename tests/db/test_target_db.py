"""The Target against the suite's PostgreSQL: where its sessions go, what the server says it
reached, and the policy that follows the database (in-process, no CLI)."""

from __future__ import annotations

import psycopg

from predeploy.db import protection
from predeploy.db import target as db_target
from predeploy.db.connect import catalog_session, migration_session
from predeploy.db.locks import migrate_session
from support.project import MakeSettings


def test_identity_is_what_the_server_says(make_settings: MakeSettings, database_url: str) -> None:
    target = db_target.of(make_settings())
    with catalog_session(target.direct, purpose="identify") as conn:
        identity = db_target.identify(conn, target)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT current_database(), system_identifier::text FROM pg_control_system()"
        ).fetchone()
    assert row is not None
    assert (identity.database, identity.system_identifier, identity.schema) == (*row, "public")


def test_sessions_carry_their_purpose_and_the_schema(
    make_settings: MakeSettings, database_url: str
) -> None:
    """A catalogue session and a migration session on the target, seen from the server:
    their application_name, and the migration session's search_path is the URL's schema=."""
    target = db_target.of(make_settings(DATABASE_URL=f"{database_url}?schema=billing"))
    with (
        catalog_session(target.direct, purpose="look") as look,
        migration_session(target.direct, "change") as change,
        psycopg.connect(database_url, autocommit=True) as spy,
    ):
        names = {
            str(r[0])
            for r in spy.execute(
                "SELECT application_name FROM pg_stat_activity WHERE pid = ANY(%s)",
                ([look.info.backend_pid, change.info.backend_pid],),
            ).fetchall()
        }
        path = change.execute("SHOW search_path").fetchone()
    assert names == {"predeploy look", "predeploy change"}
    assert path == ('"billing"',)  # exactly that schema, quoted as an identifier
    assert (str(target.history), str(target.audit)) == (
        "billing._prisma_migrations",
        "billing.predeploy_runs",
    )


def test_the_policy_follows_the_database(make_settings: MakeSettings) -> None:
    """A database a protected env marked gets the protected policy under another env; a
    fresh one keeps its env's policy."""
    prod, staging = db_target.of(make_settings("prod")), db_target.of(make_settings())
    with migrate_session(staging, "look", wait=1) as conn:
        assert not protection.policy_of(staging, conn).protected
    with migrate_session(prod, "mark", wait=1) as conn:
        protection.mark(conn, prod.audit, env="prod", command="migrate", run_id="r1")
    with catalog_session(staging.direct, purpose="look") as conn:
        policy = protection.policy_of(staging, conn, say=False)
        database = conn.info.dbname
    assert (policy.protected, policy.inherited, policy.deployed_as) == (True, True, "prod")
    assert policy.target == f"{database} on {staging.server}"
