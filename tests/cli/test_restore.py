"""Restore brings back exactly the backup moment, atomically, and only from the right backup.

On the suite's server and on PostgreSQL 15, after the
commonest shapes of migrations, `predeploy restore` (pasted from the runbook) leaves the
schema and the contents as they were when the backup was taken, and the same migrations
apply again; a failed restore changes nothing; another database's dump, a damaged one,
and a truncated newest one are refused, never replaced by another on the quiet.

A Prisma `?schema=` app's restore keeps the schema that
holds the audit table; `--backup FILE` in any folder is known by the manifest beside it; a
standby is refused up front (restore and drift, exit 3); a SIGTERM is audited `interrupted`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from predeploy.backup import dump as backup
from predeploy.backup import retention
from predeploy.commands import restore
from predeploy.config.settings import Settings
from predeploy.db import target as db_target
from predeploy.errors import BackupError
from support import migrating
from support.hazards import (
    Background,
    holding,
    one_line,
    predeploy_sessions,
    query_value,
    wait_until,
)
from support.pg15 import require_pg15
from support.receivers import Receiver
from support.servers import Server, Target
from support.wayback import Site, execute, state, write


def _backup(settings: Settings, **kwargs: Any) -> backup.BackupResult:
    """A verified backup of ``settings``' database (its Target, its backup settings)."""
    return backup.backup(db_target.of(settings), settings.backup, **kwargs)


DROP = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
# checks of files and manifests, the same on every server: run on the suite's only
suite_only = pytest.mark.parametrize("target", ["suite"], indirect=True)

BASE = """\
CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE posts (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users, title text);"""
SEED = (
    "INSERT INTO users VALUES (1, 'ada'), (2, 'bob')",
    "INSERT INTO posts (user_id, title) VALUES (1, 'hello'), (2, 'again')",
)
# one migration of each shape a restore must undo (and its variations)
KINDS = {
    "fk_table": "CREATE TABLE orders (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users);"
    "\nINSERT INTO orders VALUES (1, 1);",
    "fk_between_old_tables": "ALTER TABLE users ADD COLUMN best_post int REFERENCES posts (id);",
    "unique_and_fk": "ALTER TABLE users ADD CONSTRAINT users_name_key UNIQUE (name);\n"
    "CREATE TABLE handles (name text REFERENCES users (name));",
    "enum": "CREATE TYPE mood AS ENUM ('happy', 'sad');\nALTER TABLE users ADD COLUMN mood mood;",
    "function": "CREATE FUNCTION user_count() RETURNS bigint LANGUAGE sql"
    " AS 'SELECT count(*) FROM users';",
    "sequence": "CREATE SEQUENCE invoice_no START 1000;\nSELECT nextval('invoice_no');",
    "view": "CREATE VIEW user_names AS SELECT id, name FROM users;",
    "materialized_view": "CREATE MATERIALIZED VIEW post_counts AS"
    " SELECT user_id, count(*) FROM posts GROUP BY user_id;",
    "domain": "CREATE DOMAIN score AS int CHECK (VALUE >= 0);\n"
    "ALTER TABLE users ADD COLUMN score score DEFAULT 0;",
    "trigger": "CREATE FUNCTION lower_name() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "BEGIN NEW.name := lower(NEW.name); RETURN NEW; END $$;\n"
    "CREATE TRIGGER users_lower BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION lower_name();",
    "schema": "CREATE SCHEMA reporting;\n"
    "CREATE TABLE reporting.daily (day date PRIMARY KEY, n int);",
    "extension": "CREATE EXTENSION pg_trgm;\n"
    "CREATE INDEX users_name_trgm ON users USING gin (name gin_trgm_ops);",
    "serial_column": "ALTER TABLE users ADD COLUMN serial_no serial;",
    "identity_column": "ALTER TABLE users ADD COLUMN n int GENERATED ALWAYS AS IDENTITY;",
    "collation": 'CREATE COLLATION names_c FROM "C";\n'
    "ALTER TABLE users ALTER COLUMN name TYPE text COLLATE names_c;",
    "text_search": "CREATE TEXT SEARCH DICTIONARY names_dict (TEMPLATE = simple);\n"
    "CREATE TEXT SEARCH CONFIGURATION names_ts (COPY = simple);\n"
    "ALTER TEXT SEARCH CONFIGURATION names_ts ALTER MAPPING FOR asciiword WITH names_dict;",
    "dropped_column": "ALTER TABLE posts DROP COLUMN title;",
    "renamed_table": "ALTER TABLE posts RENAME TO articles;",
    "renamed_column": "ALTER TABLE users RENAME COLUMN name TO full_name;",
}


SET_UP = ("migrate", "applied")  # the audit row of the run that applied the base tables


@pytest.fixture
def site(target: Target, project: Path) -> Site:
    """A project on the target server with the two base tables applied and seeded."""
    here = Site(project, target.url, target.env)
    write(here.migrations, "1_base", BASE)
    migrating.migrate(here.settings())
    execute(target.url, *SEED)
    return here


GROUPS = {"new_objects": list(KINDS)[:10], "changed_objects": list(KINDS)[10:]}


@pytest.mark.parametrize("group", list(GROUPS))
def test_restore_after_each_kind_of_migration_returns_to_the_backup_moment(
    site: Site, group: str
) -> None:
    """Each kind of migration, restored: schema and contents of the backup moment, and the
    same migration applies again afterwards."""
    settings = site.settings()
    taken = _backup(settings, reason="pre-migrate")
    moment = state(site.url)
    for kind in GROUPS[group]:
        write(site.migrations, "2_change", KINDS[kind])
        migrating.migrate(settings)
        execute(site.url, "INSERT INTO users (id, " + _name(kind) + ") VALUES (3, 'cy')")
        done = restore.restore(settings, restore.plan(settings, taken.path))
        assert state(site.url) == moment, kind
        assert done.dropped or kind in NOTHING_TO_DROP, kind
        again = migrating.migrate(settings)  # the same migration applies again
        assert [a.name for a in again.applied] == ["2_change"], kind
        restore.restore(settings, restore.plan(settings, taken.path))
        shutil.rmtree(site.migrations / "2_change")


NOTHING_TO_DROP = ("dropped_column", "renamed_column", "identity_column")


def _name(kind: str) -> str:
    return "full_name" if kind == "renamed_column" else "name"


ALL_AT_ONCE = """\
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE SCHEMA reporting;
CREATE EXTENSION pg_trgm;
CREATE TABLE orders (id int PRIMARY KEY, user_id int NOT NULL REFERENCES users, mood mood);
CREATE VIEW reporting.order_count AS SELECT count(*) FROM orders;
CREATE FUNCTION order_total() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM orders';
CREATE SEQUENCE invoice_no;
ALTER TABLE posts DROP COLUMN title;
ALTER TABLE users RENAME TO members;
CREATE INDEX members_name_trgm ON members USING gin (name gin_trgm_ops);
INSERT INTO orders VALUES (1, 1, 'happy');"""


def test_pasted_restore_of_a_run_brings_back_the_moment_before_it(site: Site) -> None:
    """The runbook's restore, pasted from the printed text: schema and data as before the
    run, and the migration applies again."""
    before = state(site.url)
    write(site.migrations, "2_everything", ALL_AT_ONCE)
    run = site.run("migrate", "--env", "staging", "--yes")  # the text an operator reads
    assert run.returncode == 0, run.stderr
    after = state(site.url)
    execute(site.url, "INSERT INTO orders VALUES (2, 2, 'sad')")  # the app writes on
    printed = run.stdout.splitlines()  # the runbook is its last lines
    restore_line = next(line for line in printed if line.startswith("predeploy restore"))
    assert str(site.backups / "staging") in restore_line
    pasted = site.paste(restore_line)
    assert pasted.returncode == 0, pasted.stderr
    assert state(site.url) == before
    again = site.migrate()
    assert again["exit_code"] == 0, again["stderr"]
    assert state(site.url)["schema"] == after["schema"]
    with psycopg.connect(site.url) as conn:
        trail = conn.execute("SELECT command, outcome FROM predeploy_runs ORDER BY id").fetchall()
    ran = [("migrate", "applied"), ("restore", "restored"), ("migrate", "applied")]
    assert trail == [SET_UP, *ran]


def _restore_line(run: subprocess.CompletedProcess[str]) -> str:
    """The runbook's restore command, as a run printed it."""
    assert run.returncode == 0, run.stderr
    return next(line for line in run.stdout.splitlines() if line.startswith("predeploy restore"))


def _trail(url: str, schema: str) -> list[tuple[str, str]]:
    """(command, outcome) of every row of the audit table in ``schema``, oldest first."""
    table = sql.Identifier(schema, "predeploy_runs")
    with psycopg.connect(url) as conn:
        query = sql.SQL("SELECT command, outcome FROM {} ORDER BY id").format(table)
        return [(str(c), str(o)) for c, o in conn.execute(query).fetchall()]


def test_pasted_restores_in_a_prisma_schema_app_keep_the_audit_trail(
    target: Target, project: Path
) -> None:
    """`?schema=tenant1` (the audit table lives there): each run's pasted restore brings back
    its moment, the first run's too (before tenant1 existed), and every audit row is kept."""
    app = f"{target.url}?schema=tenant1"
    site = Site(project, app, {"DIRECT_URL": app, **target.env})
    empty = state(target.url)
    write(site.migrations, "1_base", BASE)
    first = _restore_line(site.run("migrate", "--env", "staging", "--yes"))
    execute(target.url, "SET search_path = tenant1", *SEED)
    before = state(target.url)
    write(site.migrations, "2_everything", ALL_AT_ONCE)
    second = _restore_line(site.run("migrate", "--env", "staging", "--yes"))
    execute(target.url, "INSERT INTO tenant1.orders VALUES (2, 2, 'sad')")
    pasted = site.paste(second)
    assert pasted.returncode == 0, pasted.stderr
    assert state(target.url) == before
    pasted = site.paste(first)
    assert pasted.returncode == 0, pasted.stderr
    now = state(target.url)  # tenant1 stays, holding the audit trail; all else in it is gone
    assert now["contents"] == empty["contents"]
    assert [line for line in now["schema"] if "tenant1" not in line] == empty["schema"]
    assert "CREATE SCHEMA tenant1;" in now["schema"]
    runs = [("migrate", "applied")] * 2 + [("restore", "restored")] * 2
    assert _trail(target.url, "tenant1") == runs


def test_restore_behind_a_held_lock_gives_up_and_changes_nothing(site: Site) -> None:
    """A session holding a table: restore ends (exit 4) within its bound; nothing changed."""
    settings = site.settings()
    _backup(settings)
    write(site.migrations, "2_orders", KINDS["fk_table"])
    migrating.migrate(settings)
    changed = state(site.url)
    with psycopg.connect(site.url, application_name="the-app") as holder:
        holder.execute("SELECT count(*) FROM users")  # ACCESS SHARE, held: idle in transaction
        done = site.run("restore", "--env", "staging", "--yes", PREDEPLOY_LOCK_WAIT="500ms")
    assert done.returncode == 4, done.stderr
    assert "PREDEPLOY_LOCK_WAIT" in done.stderr and "unchanged" in done.stderr
    assert state(site.url) == changed


def test_restore_of_an_archive_that_breaks_part_way_changes_nothing(site: Site) -> None:
    """An archive cut short (its manifest re-signed to match): exit 4, nothing changed."""
    settings = site.settings()
    execute(site.url, "INSERT INTO users SELECT g, md5(g::text) FROM generate_series(10, 20000) g")
    taken = _backup(settings)
    write(site.migrations, "2_orders", KINDS["fk_table"])
    migrating.migrate(settings)
    changed = state(site.url)
    data = taken.path.read_bytes()
    taken.path.write_bytes(data[: len(data) * 2 // 3])
    _resign(taken.path)
    done = site.run("restore", "--env", "staging", "--backup", str(taken.path), "--yes")
    assert done.returncode == 4, done.stderr
    assert "unchanged" in done.stderr
    assert state(site.url) == changed


@suite_only
def test_a_restore_stopped_by_sigterm_is_audited_interrupted_and_changes_nothing(
    site: Site,
) -> None:
    """SIGTERM while the replay waits for a table the app holds: exit 143 with one line,
    the replay's server session ended at once (not left holding what it dropped), the
    audit row says `interrupted` (as migrate's), nothing changed."""
    settings = site.settings()
    _backup(settings)
    write(site.migrations, "2_orders", KINDS["fk_table"])
    migrating.migrate(settings)
    changed = state(site.url)
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND application_name LIKE 'predeploy restore %%' AND datname = current_database()"
    )
    with holding(site.url, "SELECT count(*) FROM users"):  # the app, idle in transaction
        run = Background(site.project, "restore", "--env", "staging", "--yes", env=site.env)
        try:
            wait_until(lambda: query_value(site.url, waiting), what="the replay to wait")
            os.kill(run.pid, signal.SIGTERM)
            done = run.finish(15)
        finally:
            run.kill()
        # the app still holds its lock: the replay's session must not live on behind it,
        # holding what it dropped (it did not notice its psql was gone)
        wait_until(lambda: not predeploy_sessions(site.url), timeout=5, what="sessions to end")
    assert done.returncode == 143, done.stderr
    assert "SIGTERM" in one_line(done)
    assert state(site.url) == changed
    ran = [("migrate", "applied"), ("restore", "interrupted")]  # the change, then the restore
    assert _trail(site.url, "public") == [SET_UP, *ran]


@suite_only
def test_a_restore_killed_with_sigkill_leaves_a_list_file_the_next_restore_sweeps(
    site: Site, tmp_path: Path
) -> None:
    """SIGKILL while the replay waits for a table the app holds: pg_restore's list file
    (its name carries the dead run's pid) is gone after the next restore; a live run's
    list file, and files that only look like ours, are left alone."""
    settings = site.settings()
    _backup(settings)
    write(site.migrations, "2_orders", KINDS["fk_table"])
    migrating.migrate(settings)
    temp = tmp_path / "tmp"
    temp.mkdir()
    alive = temp / f"predeploy-{os.getpid()}-kept.list"  # a live process's (this one)
    alive.write_text("")
    foreign = temp / "predeploy-notapid-x.list"
    foreign.write_text("")
    with holding(site.url, "SELECT count(*) FROM users"):  # the app, idle in transaction
        run = Background(
            site.project, "restore", "--env", "staging", "--yes", env=site.env, tmpdir=temp
        )
        try:
            listed = wait_until(
                lambda: list(temp.glob(f"predeploy-{run.pid}-*.list")), what="the list file"
            )
            os.kill(run.pid, signal.SIGKILL)
            assert run.process.wait(15) == -signal.SIGKILL
        finally:
            run.kill()
        for pid, _ in predeploy_sessions(site.url):  # its orphaned pg_restore and psql
            query_value(site.url, "SELECT pg_terminate_backend(%s)", pid)
    assert all(path.exists() for path in listed)  # what SIGKILL leaves behind
    done = site.run("restore", "--env", "staging", "--yes", TMPDIR=str(temp))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in temp.iterdir()) == sorted([alive.name, foreign.name])
    assert _trail(site.url, "public")[-1] == ("restore", "restored")


@suite_only
def test_another_databases_dump_is_refused_unless_named_so(site: Site) -> None:
    """A staging dump copied into backups/prod/: refused (exit 4) unless --other-database."""
    staging = site.settings()
    taken = _backup(staging)
    prod_folder = site.backups / "prod"
    prod_folder.mkdir()
    for path in (taken.path, taken.manifest):
        shutil.copy2(path, prod_folder / path.name)
    write(site.migrations, "2_orders", KINDS["fk_table"])
    migrating.migrate(staging)
    changed = state(site.url)
    refused = site.run("restore", "--env", "prod", "--yes")  # by default: never picked
    assert refused.returncode == 4, refused.stderr
    assert "none of the 1 there is this database's" in refused.stderr
    assert "it was taken in env staging, this is env prod" in refused.stderr
    assert "--other-database" not in refused.stderr  # nobody asked for that dump
    copy = str(prod_folder / taken.path.name)
    named = site.run("restore", "--env", "prod", "--backup", copy, "--yes")
    assert named.returncode == 4, named.stderr
    assert "not a backup of this database" in named.stderr
    assert "--other-database" in named.stderr
    assert state(site.url) == changed
    assert _trail(site.url, "public")[-1] == ("restore", "refused: another database's backup")
    forced = site.run("restore", "--env", "prod", "--backup", copy, "--yes", "--other-database")
    assert forced.returncode == 0, forced.stderr
    assert "orders" not in json.dumps(state(site.url)["schema"])


@suite_only
def test_with_a_shared_backup_folder_each_database_restores_and_keeps_its_own(
    site: Site, target: Target, project: Path
) -> None:
    """Two databases back up into one PREDEPLOY_BACKUP_DIR (the other one last): restore
    without --backup picks this database's newest dump, never the other's; and retention
    (PREDEPLOY_BACKUP_KEEP=1) prunes each database's own, never the other's."""
    name = f"t_other_{os.getpid()}"
    execute(target.server.admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        other = Site(project, target.server.url(name), {})
        execute(other.url, "CREATE TABLE things (id int)", "INSERT INTO things VALUES (1)")
        keep_one = {"PREDEPLOY_BACKUP_KEEP": "1"}
        mine = _backup(site.settings("prod", **keep_one))
        theirs = _backup(other.settings("prod", **keep_one))
        assert mine.path.exists() and theirs.pruned == ()  # not one of its own
        assert theirs.created_at > mine.created_at
        write(site.migrations, "2_orders", KINDS["fk_table"])
        before = state(site.url)
        migrating.migrate(site.settings("prod", PREDEPLOY_ALLOW_NO_BACKUP="1"))
        assert state(site.url) != before
        done = site.run("restore", "--env", "prod", "--yes", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["backup"] == str(mine.path)
        assert state(site.url) == before
        assert query_value(other.url, "SELECT count(*) FROM things") == 1  # untouched
        again = _backup(site.settings("prod", **keep_one))
        assert again.pruned == (mine.path,)
        assert theirs.path.exists()
    finally:
        execute(target.server.admin_url, sql.SQL(DROP).format(sql.Identifier(name)))


def test_a_dump_of_a_same_named_database_on_another_server_is_refused(
    site: Site, target: Target, pg_server: Server, pg15_server: Server, project: Path
) -> None:
    """The same database name on another server: refused, naming the server's identifier."""
    other_server = pg15_server if target.name == "suite" else pg_server
    database = site.url.rsplit("/", 1)[1]
    execute(other_server.admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        elsewhere = Site(project, other_server.url(database), {})
        elsewhere.env["PREDEPLOY_PG_BIN_DIR"] = target.env.get("PREDEPLOY_PG_BIN_DIR", "")
        taken = _backup(elsewhere.settings(), reason="elsewhere")
        with pytest.raises(BackupError, match="another server") as refused:
            restore.plan(site.settings(), taken.path)
        assert "--other-database" in refused.value.message
    finally:
        execute(other_server.admin_url, sql.SQL(DROP).format(sql.Identifier(database)))


@suite_only
def test_a_backup_named_in_another_folder_is_known_by_the_manifest_beside_it(site: Site) -> None:
    """--backup FILE outside the env's folder: the manifest beside FILE is read (a staging
    dump restores into prod with --other-database); without one: exit 4 naming FILE's
    folder; a path that does not exist: exit 2 saying so."""
    staging = site.settings()
    taken = _backup(staging)
    copied, loose = site.project / "copied", site.project / "loose"
    for folder, files in ((copied, (taken.path, taken.manifest)), (loose, (taken.path,))):
        folder.mkdir()
        for path in files:
            shutil.copy2(path, folder / path.name)
    copy = copied / taken.path.name
    assert restore.plan(staging, copy).mismatches == ()  # its own env, from any folder
    write(site.migrations, "2_orders", KINDS["fk_table"])
    migrating.migrate(staging)
    changed = state(site.url)
    for args, code, words in (
        (("--backup", str(copy)), 4, ("it was taken in env staging", "--other-database")),
        (("--backup", str(loose / taken.path.name)), 4, ("no manifest", str(loose))),
        (("--backup", "/nonexistent.dump"), 2, ("/nonexistent.dump does not exist",)),
    ):
        refused = site.run("restore", "--env", "prod", *args, "--yes")
        assert refused.returncode == code, refused.stderr
        line = refused.stderr.strip().splitlines()[-1]
        assert all(word in line for word in words), line
    assert state(site.url) == changed
    forced = site.run(
        "restore", "--env", "prod", "--backup", str(copy), "--yes", "--other-database"
    )
    assert forced.returncode == 0, forced.stderr
    assert "orders" not in json.dumps(state(site.url)["schema"])


def test_restore_and_drift_on_a_standby_are_refused_up_front(
    request: pytest.FixtureRequest, project: Path
) -> None:
    """Pointed at a standby, restore and drift (its shadow) exit 3 at once, one line saying
    to use the primary, as migrate does."""
    primary_url, standby_url = request.getfixturevalue("standby")  # test_failures' fixture
    primary = Site(project, primary_url, {})
    write(primary.migrations, "1_base", BASE)
    migrating.migrate(primary.settings())
    taken = _backup(primary.settings())  # its manifest names the standby's server too
    lsn = query_value(primary_url, "SELECT pg_current_wal_lsn()::text")
    replayed = "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn"  # the history is there too
    wait_until(lambda: query_value(standby_url, replayed, lsn), what="the standby's replay")
    replica = Site(project, standby_url, {})
    for args in (("restore", "--backup", str(taken.path), "--yes"), ("drift",)):
        done = replica.run(*args, "--env", "staging")
        line = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 3, (args, done.stderr)
        assert "is a standby" in line and "primary" in line, line


@suite_only
def test_a_truncated_newest_dump_stops_restore_without_falling_back(site: Site) -> None:
    """The newest dump truncated: restore names it (exit 4) and restores no older one."""
    settings = site.settings()
    older = _backup(settings, reason="older")
    newest = _backup(settings, reason="newest")
    write(site.migrations, "2_orders", KINDS["fk_table"])
    migrating.migrate(settings)
    changed = state(site.url)
    data = newest.path.read_bytes()
    newest.path.write_bytes(data[: len(data) // 2])
    done = site.run("restore", "--env", "staging", "--yes")
    assert done.returncode == 4, done.stderr
    assert str(newest.path) in done.stderr and "--backup" in done.stderr
    assert state(site.url) == changed
    restore.restore(settings, restore.plan(settings, older.path))  # named, it restores
    assert "public.orders" not in state(site.url)["contents"]


@suite_only
def test_a_same_size_corrupted_dump_fails_its_check_and_is_never_restored(site: Site) -> None:
    """One byte changed: `backups --check` exits 1 naming it; restore refuses it; older ok."""
    settings = site.settings()
    good = _backup(settings, reason="good")
    bad = _backup(settings, reason="bad")
    data = bytearray(bad.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.path.write_bytes(bytes(data))
    listed = [b.as_dict() for b in retention.list_backups(settings.backup)]
    assert [(b["last_check"], b["verified"]) for b in listed] == [("at creation", True)] * 2
    checked = site.run("backups", "--env", "staging", "--check", "--json")
    assert checked.returncode == 1, checked.stderr
    message = checked.stderr.strip().splitlines()[-1]
    assert str(bad.path) in message and str(good.path) not in message
    shown = {b["path"]: b for b in json.loads(checked.stdout)["backups"]}
    assert shown[str(bad.path)]["present"] is True  # there, damaged: not "MISSING"
    after = {str(b.path): b.as_dict() for b in retention.list_backups(settings.backup)}
    assert after[str(bad.path)]["last_check"] == "MISMATCH"
    assert after[str(bad.path)]["verified"] is False
    assert after[str(good.path)]["last_check"] == "ok" and after[str(good.path)]["verified"]
    moment = state(site.url)
    refused = site.run("restore", "--env", "staging", "--yes")
    assert refused.returncode == 4
    assert str(bad.path) in refused.stderr and "damaged" in refused.stderr
    assert state(site.url) == moment


def test_a_database_with_an_extension_member_table_backs_up_and_restores(site: Site) -> None:
    """A table that belongs to an extension: the backup verifies, the restore succeeds.

    pg_dump leaves extension members to their extension (CREATE EXTENSION makes them, the
    archive holds only the data of tables registered with pg_extension_config_dump), so a
    table added to one by hand is, like in pg_dump's own restores, the extension's business.
    """
    execute(
        site.url,
        "CREATE EXTENSION pg_trgm",
        "CREATE TABLE trgm_settings (key text PRIMARY KEY, value text)",
        "ALTER EXTENSION pg_trgm ADD TABLE trgm_settings",
    )
    settings = site.settings()
    taken = _backup(settings)
    assert "trgm_settings" not in json.dumps(json.loads(taken.manifest.read_text())["tables"])
    moment = state(site.url, without=("trgm_settings",))
    write(site.migrations, "2_orders", KINDS["fk_table"])
    migrating.migrate(settings)
    restore.restore(settings, restore.plan(settings, None))
    assert state(site.url, without=("trgm_settings",)) == moment


@suite_only
def test_two_backups_started_at_once_both_succeed(site: Site) -> None:
    """Two `predeploy backup` started together (the same second): two verified dumps."""
    argv = [sys.executable, "-m", "predeploy", "backup", "--env", "staging", "--json"]
    environ = {**os.environ, **site.env}
    both = [
        subprocess.Popen(
            argv,
            cwd=site.project,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in both]
    assert [p.returncode for p in both] == [0, 0], [err for _, err in outputs]
    paths = {json.loads(out)["path"] for out, _ in outputs}
    assert len(paths) == 2
    checked = [retention.check(b) for b in retention.list_backups(site.settings().backup)]
    assert {str(b.path): b.last_check for b in checked} == dict.fromkeys(paths, "ok")


def _resign(dump: Path) -> None:
    """Make the manifest match the dump as it is now (a damage the checksum cannot see)."""
    from predeploy.backup.archive import digest, manifest_path  # noqa: PLC0415

    path = manifest_path(dump)
    manifest = json.loads(path.read_text())
    manifest["sha256"], manifest["size"] = digest(dump)
    path.write_text(json.dumps(manifest))


def test_backups_of_same_named_databases_on_two_servers_into_one_folder_both_survive(
    pg_server: Server, pg15_server: Server, project: Path
) -> None:
    """One PREDEPLOY_BACKUP_DIR, two servers, one database name, the same second: two dumps,
    each with its own manifest (the per-database lock cannot see across servers)."""
    name = f"t_shared_{os.getpid()}"
    sites = [
        Site(project, pg_server.url(name), {}),
        Site(project, pg15_server.url(name), {"PREDEPLOY_PG_BIN_DIR": str(require_pg15())}),
    ]
    for server in (pg_server, pg15_server):
        execute(server.admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        argv = [sys.executable, "-m", "predeploy", "backup", "--env", "prod", "--json"]
        both = [
            subprocess.Popen(
                argv,
                cwd=project,
                env={**os.environ, **here.env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            for here in sites
        ]
        outputs = [p.communicate(timeout=60) for p in both]
        assert [p.returncode for p in both] == [0, 0], [err for _, err in outputs]
        paths = {json.loads(out)["path"] for out, _ in outputs}
        assert len(paths) == 2
        found = retention.list_backups(sites[0].settings("prod").backup)
        assert {str(b.path) for b in found} == paths
        assert len({b.manifest.system_identifier for b in found}) == 2
        assert all(retention.check(b).last_check == "ok" for b in found)
    finally:
        for server in (pg_server, pg15_server):
            execute(server.admin_url, sql.SQL(DROP).format(sql.Identifier(name)))


@suite_only
def test_a_restore_the_server_refuses_names_its_error_and_changes_nothing(site: Site) -> None:
    """The replay fails on the server (an event trigger refuses DDL): exit 4 with the
    server's own error, nothing changed."""
    settings = site.settings()
    _backup(settings)
    write(site.migrations, "2_orders", KINDS["fk_table"])
    migrating.migrate(settings)
    execute(
        site.url,
        "CREATE FUNCTION refuse_ddl() RETURNS event_trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'DDL is frozen for the audit'; END$$",
        "CREATE EVENT TRIGGER frozen ON ddl_command_start EXECUTE FUNCTION refuse_ddl()",
    )
    changed = state(site.url)
    done = site.run("restore", "--env", "staging", "--yes")
    assert done.returncode == 4, done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert "DDL is frozen for the audit" in message and "unchanged" in message
    assert state(site.url) == changed


@suite_only
def test_a_restore_refused_for_want_of_a_terminal_leaves_an_audit_row(site: Site) -> None:
    """A bare `restore` read the database, then could not ask: exit 8, nothing restored,
    and its row says what refused it."""
    write(site.migrations, "1_t", "CREATE TABLE t (id int);")
    migrating.migrate(site.settings())
    _backup(site.settings())
    before = state(site.url)
    done = site.run("restore", "--env", "staging")
    assert done.returncode == 8, done.stderr
    assert "no terminal to ask on" in one_line(done)
    assert state(site.url) == before
    assert _trail(site.url, "public")[-1] == ("restore", "refused: confirmation (no terminal)")


@suite_only
@pytest.mark.usefixtures("apprise_loaded")
def test_a_restore_refused_for_a_damaged_backup_leaves_an_audit_row_and_says_so(
    site: Site, receiver: Receiver
) -> None:
    """The newest prod dump damaged: `restore --env prod --yes` (and with `--backup` that
    file) had read the database, then refused (exit 4) with no audit row, no notification,
    and sent the operator to a bare `predeploy backups` (env dev's list): now each refusal
    has its row `refused: damaged backup` and its failure message, and the line names
    `predeploy backups --env prod --check`."""
    prod = site.settings("prod")
    bad = _backup(prod, reason="bad")
    data = bytearray(bad.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.path.write_bytes(bytes(data))
    before = state(site.url)
    notify = {"PREDEPLOY_NOTIFY_URLS": receiver.url(), "PREDEPLOY_NOTIFY_TIMEOUT": "5s"}
    for args in ((), ("--backup", str(bad.path))):
        done = site.run("restore", "--env", "prod", *args, "--yes", **notify)
        assert done.returncode == 4, done.stderr
        line = one_line(done)
        assert str(bad.path) in line and "is damaged" in line, line
        assert "(predeploy backups --env prod --check lists them)" in line, line
        assert _trail(site.url, "public")[-1] == ("restore", "refused: damaged backup")
    assert state(site.url) == before
    events = [p["event"] for p in receiver.payloads()]
    assert [(e["command"], e["env"], e["outcome"]) for e in events] == [
        ("restore", "prod", "failed")
    ] * 2, events
    assert all("is damaged" in e["error"] for e in events), events
