"""A schema-per-tenant target's backup and restore: its schema alone, against a real server.

One database holds tenants acme and beta (a schema each, migrated as a fleet target is)
and a table in public. A backup of acme dumps acme alone; restoring it brings acme back
and leaves beta and public as they are, rows and DDL; the audit trail in acme survives.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from predeploy.backup import dump, objects, retention
from predeploy.commands import restore
from predeploy.config.fleet import Member, settings_for
from predeploy.config.settings import Settings
from predeploy.db import target as db_target
from predeploy.errors import BackupError, ConfigError
from support import migrating
from support.project import MakeSettings, write_migrations

_FIRST = """
CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, mood mood);
CREATE VIEW named AS SELECT name FROM items;
CREATE FUNCTION shout(t text) RETURNS text LANGUAGE sql AS 'SELECT upper(t)';
"""


_ROWS = sql.SQL("SELECT coalesce(string_agg(x::text, ',' ORDER BY x::text), '') FROM {} x")
_RUNS = sql.SQL("SELECT command, outcome FROM {} ORDER BY started_at")


def _tenant(settings: Settings, name: str) -> Settings:
    """The settings of fleet target ``name``: schema ``name`` in the env's database."""
    return settings_for(settings, Member(name=name, schema=name), settings.migration_url)


def _backup(settings: Settings, reason: str = "manual") -> dump.BackupResult:
    return dump.backup(db_target.of(settings), settings.backup, reason=reason)


def _restore(settings: Settings, path: Path) -> restore.RestoreResult:
    chosen = restore.plan(settings, path)
    return restore.restore(settings, chosen)


def _schema(url: str, schema: str) -> dict[str, object]:
    """``schema``'s DDL (pg_dump, without our audit table) and every table's rows."""
    from predeploy.db import embedded  # noqa: PLC0415 (the suite's pg_dump)

    skip = f"{schema}.predeploy_runs"

    ddl = subprocess.run(
        [str(embedded.bin_dir() / "pg_dump"), "--schema-only", "-n", schema, "-T", skip, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    with psycopg.connect(url) as conn:
        tables = [
            t
            for (t,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s"
                " AND tablename <> 'predeploy_runs' ORDER BY 1",
                (schema,),
            )
        ]
        rows = {t: conn.execute(_ROWS.format(sql.Identifier(schema, t))).fetchone() for t in tables}
    lines = [line for line in ddl.splitlines() if line and not line.startswith(("--", "\\"))]
    return {"ddl": lines, "rows": rows}


def _runs(url: str, schema: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return [
            (str(c), str(o))
            for c, o in conn.execute(_RUNS.format(sql.Identifier(schema, "predeploy_runs")))
        ]


@pytest.fixture
def tenants(
    database_url: str, make_settings: MakeSettings, migrations_dir: Path, tmp_path: Path
) -> tuple[Settings, Settings, Settings]:
    """(the env's settings, acme's, beta's): both tenants migrated, with rows, and a
    table in public."""
    write_migrations(migrations_dir, {"1_first": _FIRST})
    env = make_settings(PREDEPLOY_BACKUP_DIR=str(tmp_path / "backups"))
    acme, beta = _tenant(env, "acme"), _tenant(env, "beta")
    for tenant in (acme, beta):
        migrating.migrate(tenant)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO acme.items (name, mood) VALUES ('a1', 'calm'), ('a2', 'busy')")
        conn.execute("INSERT INTO beta.items (name) VALUES ('b1')")
        conn.execute("CREATE TABLE public.shared (id int PRIMARY KEY)")
        conn.execute("INSERT INTO public.shared VALUES (1)")
    return env, acme, beta


def test_scoped_backup_holds_its_schema_alone(
    tenants: tuple[Settings, Settings, Settings], tmp_path: Path
) -> None:
    """acme's backup: in its target folder, named with its schema, acme's tables alone."""
    _env, acme, _beta = tenants
    made = _backup(acme)
    assert made.path.parent == tmp_path / "backups" / "staging" / "targets" / "acme"
    assert ".acme_" in made.path.name
    manifest = json.loads(made.manifest.read_text())
    assert manifest["schema"] == "acme"
    assert {(t["schema"], t["name"]) for t in manifest["tables"]} == {
        ("acme", "items"),
        ("acme", "_prisma_migrations"),
        ("acme", "predeploy_runs"),
    }
    assert manifest["restore_command"].startswith("predeploy restore --env staging --target acme")
    from predeploy.db import embedded  # noqa: PLC0415 (the suite's pg_restore)

    toc = subprocess.run(
        [str(embedded.bin_dir() / "pg_restore"), "--list", str(made.path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    entries = objects.toc_entries(toc)
    assert ("SCHEMA", "-", "acme") in entries
    assert {schema for _, schema, _ in entries} == {"acme", "-"}


def test_restore_brings_back_acme_and_leaves_beta(
    tenants: tuple[Settings, Settings, Settings], database_url: str
) -> None:
    """Back up acme, change both tenants (rows and DDL), restore acme: acme is as it was,
    beta and public keep every change, acme's audit trail keeps its rows."""
    _env, acme, _beta = tenants
    made = _backup(acme)
    acme_then = _schema(database_url, "acme")
    runs_before = _runs(database_url, "acme")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO acme.items (name) VALUES ('a3')")
        conn.execute("DELETE FROM acme.items WHERE name = 'a1'")
        conn.execute("CREATE TABLE acme.newer (id int REFERENCES acme.items (id))")
        conn.execute("CREATE FUNCTION acme.later() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        conn.execute("ALTER TABLE acme.items ADD COLUMN extra int")
        conn.execute("INSERT INTO beta.items (name) VALUES ('b2')")
        conn.execute("DELETE FROM beta.items WHERE name = 'b1'")
        conn.execute("CREATE TABLE beta.extra (id int REFERENCES beta.items (id))")
        conn.execute("ALTER TABLE beta.items ADD COLUMN extra int")
        conn.execute("INSERT INTO public.shared VALUES (2)")
    beta_now, public_now = _schema(database_url, "beta"), _schema(database_url, "public")
    assert _schema(database_url, "acme") != acme_then

    result = _restore(acme, made.path)

    assert _schema(database_url, "acme") == acme_then
    assert _schema(database_url, "beta") == beta_now
    assert _schema(database_url, "public") == public_now
    assert set(result.dropped) == {
        "fk constraint acme.newer newer_id_fkey",
        "table acme.newer",
        "function acme.later()",
    }
    runs = _runs(database_url, "acme")
    assert runs[: len(runs_before)] == runs_before
    assert runs[-1] == ("restore", "restored")


def test_restore_that_would_reach_beta_fails_whole(
    tenants: tuple[Settings, Settings, Settings], database_url: str
) -> None:
    """A view in beta over acme's table: replacing acme would have to drop it, so the
    restore fails and changes nothing, in acme or in beta."""
    _env, acme, _beta = tenants
    made = _backup(acme)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO acme.items (name) VALUES ('a3')")
        conn.execute("CREATE VIEW beta.peek AS SELECT name FROM acme.items")
    acme_now, beta_now = _schema(database_url, "acme"), _schema(database_url, "beta")
    with pytest.raises(BackupError, match="the database is unchanged"):
        _restore(acme, made.path)
    assert _schema(database_url, "acme") == acme_now
    assert _schema(database_url, "beta") == beta_now


def test_restore_refuses_another_scope(tenants: tuple[Settings, Settings, Settings]) -> None:
    """acme's backup on beta, on the whole database, and a whole database's backup on acme:
    each refused with exit 2, even with --other-database."""
    env, acme, beta = tenants
    scoped, whole = _backup(acme), _backup(env)
    cases = [
        (beta, scoped.path, "it holds schema acme, the target is schema beta"),
        (env, scoped.path, "it holds schema acme alone, the target is the whole database"),
        (acme, whole.path, "it holds the whole database, the target is schema acme alone"),
    ]
    for settings, path, why in cases:
        with pytest.raises(ConfigError, match=why) as caught:
            restore.plan(settings, path, other_database=True)
        assert caught.value.exit_code == 2
        assert "\n" not in caught.value.message


def test_retention_and_listing_per_target(
    tenants: tuple[Settings, Settings, Settings], make_settings: MakeSettings, tmp_path: Path
) -> None:
    """PREDEPLOY_BACKUP_KEEP=1 per target folder: acme's second backup prunes acme's first,
    never beta's nor the whole database's; each target lists its own."""
    env = make_settings(PREDEPLOY_BACKUP_DIR=str(tmp_path / "backups"), PREDEPLOY_BACKUP_KEEP="1")
    acme, beta = _tenant(env, "acme"), _tenant(env, "beta")
    whole, beta_made, first = _backup(env), _backup(beta), _backup(acme)
    second = _backup(acme, reason="again")
    assert second.pruned == (first.path,)
    assert not first.path.exists()
    assert whole.path.exists() and beta_made.path.exists()
    assert [b.path for b in retention.list_backups(acme.backup)] == [second.path]
    assert [b.path for b in retention.list_backups(beta.backup)] == [beta_made.path]
    assert [b.path for b in retention.list_backups(env.backup)] == [whole.path]


def test_newest_by_default_is_the_targets_own(
    tenants: tuple[Settings, Settings, Settings], database_url: str
) -> None:
    """`restore --target acme` without --backup takes acme's newest backup."""
    _env, acme, beta = tenants
    _backup(beta)
    made = _backup(acme)
    chosen = restore.plan(acme, None)
    assert chosen.backup.path == made.path
    assert chosen.schema == "acme"
    assert chosen.current_tables == 3


def test_new_tenant_schema_backed_up_empty(
    tenants: tuple[Settings, Settings, Settings], database_url: str
) -> None:
    """A tenant whose schema is not there yet (its first migrate): the backup makes it
    (as Prisma would) and keeps it empty; restoring it undoes the first migrate."""
    env, _acme, _beta = tenants
    gamma = _tenant(env, "gamma")
    made = _backup(gamma, reason="pre-migrate")
    assert json.loads(made.manifest.read_text())["tables"] == []
    migrating.migrate(gamma)
    _restore(gamma, made.path)
    with psycopg.connect(database_url) as conn:
        left = conn.execute(
            "SELECT array_agg(tablename::text ORDER BY 1) FROM pg_tables WHERE schemaname = 'gamma'"
        ).fetchone()
    assert left is not None and left[0] == ["predeploy_runs"]


def test_a_schema_name_with_pattern_characters_is_dumped_alone(
    tenants: tuple[Settings, Settings, Settings], database_url: str
) -> None:
    """Schema ``Ac.me*`` (dot, star, capitals) is dumped alone, not ``Ac.meX`` beside it,
    and its file name keeps only safe characters."""
    env, _acme, _beta = tenants
    with psycopg.connect(database_url, autocommit=True) as conn:
        for schema in ("Ac.me*", "Ac.meX"):
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(schema, "t")))
    odd = settings_for(env, Member(name="odd", schema="Ac.me*"), env.migration_url)
    made = _backup(odd)
    assert ".Ac.me-_" in made.path.name
    manifest = json.loads(made.manifest.read_text())
    assert manifest["schema"] == "Ac.me*"
    assert [(t["schema"], t["name"]) for t in manifest["tables"]] == [("Ac.me*", "t")]


def test_a_directory_dump_of_a_schema(
    tenants: tuple[Settings, Settings, Settings],
    make_settings: MakeSettings,
    database_url: str,
    tmp_path: Path,
) -> None:
    """PREDEPLOY_BACKUP_JOBS=2: acme's dump is a directory by parallel workers, still acme
    alone, and restores acme alone."""
    env = make_settings(PREDEPLOY_BACKUP_DIR=str(tmp_path / "backups"), PREDEPLOY_BACKUP_JOBS="2")
    acme = _tenant(env, "acme")
    made = _backup(acme)
    assert made.path.is_dir() and made.format == "directory"
    assert json.loads(made.manifest.read_text())["schema"] == "acme"
    acme_then = _schema(database_url, "acme")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO acme.items (name) VALUES ('a3')")
        conn.execute("INSERT INTO beta.items (name) VALUES ('b3')")
    beta_now = _schema(database_url, "beta")
    _restore(acme, made.path)
    assert _schema(database_url, "acme") == acme_then
    assert _schema(database_url, "beta") == beta_now
