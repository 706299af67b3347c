"""The privileges gate checks each privilege a run needs, one by one.

``has_table_privilege(t, 'SELECT, INSERT, UPDATE')`` is true when *any* of them is held:
a SELECT-only role and an owner without INSERT went through, and failed after the
backup. Each case here is a real role; the refusal is exit 2 before any backup, naming
the GRANT statements to run (quoted, schema-qualified, for the current user), and running
exactly those lets the same command through.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from predeploy.config.settings import load_settings
from support import migrating
from support.cli import Cli
from support.hazards import one_line, project_env, query_value
from support.project import write_migrations

HISTORY = '"public"."_prisma_migrations"'
AUDIT = '"public"."predeploy_runs"'
SEQUENCE = '"public"."predeploy_runs_id_seq"'


def _with_user(url: str, user: str, password: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    return f"postgresql://{user}:{password}@{info['host']}:{info['port']}/{info['dbname']}"


class Role:
    """A login role whose name needs quoting; its URL and its quoted name."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name, password = f"Ro-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        self.quoted = f'"{self.name}"'
        self.url = _with_user(admin_url, self.name, password)
        self.admin(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(self.name), sql.Literal(password)
            )
        )
        # PostgreSQL 15+: PUBLIC has no CREATE on public; say so for older servers too
        self.admin(sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))

    def admin(self, statement: sql.Composable | str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(statement if isinstance(statement, sql.Composable) else sql.SQL(statement))  # type: ignore[arg-type]

    def grant(self, what: str) -> None:
        self.admin(sql.SQL(what + " TO {}").format(sql.Identifier(self.name)))  # type: ignore[arg-type]


@pytest.fixture
def role(database_url: str) -> Iterator[Role]:
    made = Role(database_url)
    try:
        yield made
    finally:
        made.admin(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(made.name)))
        made.admin(sql.SQL("DROP ROLE {}").format(sql.Identifier(made.name)))


def _applied_by_admin(database_url: str, project: Path) -> None:
    """1_a applied by the superuser (the history and audit tables exist, the admin's);
    2_b pending, a migration that needs no privilege of its own."""
    migrations = project / "migrations"
    write_migrations(migrations, {"1_a": "CREATE TABLE a (id int);"})
    (migrations / "1_a" / "down.sql").write_text("DROP TABLE a;\n")
    migrating.migrate(load_settings("staging", project, project_env(database_url, project)))
    with psycopg.connect(database_url, autocommit=True) as conn:  # the audit row of a run
        conn.execute(
            "CREATE TABLE IF NOT EXISTS predeploy_runs (id bigserial PRIMARY KEY, run_id text"
            " NOT NULL, command text NOT NULL, env text NOT NULL, operator text NOT NULL, host"
            " text NOT NULL, git_revision text, tool_version text NOT NULL, started_at"
            " timestamptz NOT NULL, finished_at timestamptz NOT NULL, outcome text NOT NULL,"
            " migrations jsonb NOT NULL DEFAULT '[]', backup_path text, backup_sha256 text,"
            " detail text, health jsonb)"
        )
    write_migrations(migrations, {"2_b": "SELECT 1;"})


def _grants(line: str) -> list[str]:
    return re.findall(r'GRANT [A-Z, ]+ ON (?:TABLE|SCHEMA|SEQUENCE|DATABASE) \S+ TO "[^"]+"', line)


def _refused(cli: Cli, project: Path, url: str, *args: str) -> str:
    done = cli(*args, env=project_env(url, project))
    line = one_line(done)
    assert done.returncode == 2, done.stderr
    backups = project / "backups"
    assert not backups.exists() or not any(p.is_file() for p in backups.rglob("*")), line
    return line


def _migrate(cli: Cli, project: Path, url: str, *extra: str) -> str:
    return _refused(cli, project, url, "migrate", "--env", "staging", "--yes", *extra)


def _take_advice(role: Role, line: str) -> None:
    grants = _grants(line)
    assert grants, line
    for grant in grants:
        assert grant.endswith(f"TO {role.quoted}"), line
        role.admin(grant)


def _goes_through(cli: Cli, project: Path, role: Role) -> None:
    env = project_env(role.url, project)
    done = cli("migrate", "--env", "staging", "--yes", "--no-backup", env=env)
    assert done.returncode == 0, done.stderr


def test_select_only_role_is_refused_naming_each_grant(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """SELECT on the history table only: INSERT and UPDATE are named, and the audit
    table's INSERT and its sequence; no backup. The GRANTs run as printed: it migrates."""
    _applied_by_admin(database_url, project)
    role.grant(f"GRANT SELECT ON TABLE {HISTORY}")
    line = _migrate(cli, project, role.url)
    assert f"GRANT INSERT, UPDATE ON TABLE {HISTORY} TO {role.quoted}" in line, line
    assert f"GRANT INSERT ON TABLE {AUDIT} TO {role.quoted}" in line, line
    assert f"GRANT USAGE ON SEQUENCE {SEQUENCE} TO {role.quoted}" in line, line
    assert "SELECT" not in line.split("GRANT INSERT, UPDATE")[1].split(";")[0]
    assert "no backup taken" in line
    _take_advice(role, line)
    _goes_through(cli, project, role)
    outcome = query_value(database_url, "SELECT outcome FROM predeploy_runs ORDER BY id DESC")
    assert outcome == "applied"


def test_owner_that_revoked_its_own_insert_is_refused(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """The history table's owner has every privilege unless revoked: without INSERT it is
    refused before the backup (it was let through: 'SELECT, INSERT, UPDATE' is any-of)."""
    _applied_by_admin(database_url, project)
    for table in (HISTORY, AUDIT):
        role.admin(sql.SQL(f"ALTER TABLE {table} OWNER TO {{}}").format(sql.Identifier(role.name)))  # type: ignore[arg-type]
    with psycopg.connect(role.url, autocommit=True) as conn:  # the owner revokes its own
        conn.execute(f"REVOKE INSERT ON TABLE {HISTORY} FROM CURRENT_USER")
    line = _migrate(cli, project, role.url)
    assert _grants(line) == [f"GRANT INSERT ON TABLE {HISTORY} TO {role.quoted}"], line
    _take_advice(role, line)
    _goes_through(cli, project, role)


def test_audit_table_without_insert_is_refused(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """Everything on the history table, nothing on the audit table: its INSERT and its id
    sequence are named (the run's row would be lost after the work was done)."""
    _applied_by_admin(database_url, project)
    role.grant(f"GRANT SELECT, INSERT, UPDATE ON TABLE {HISTORY}")
    line = _migrate(cli, project, role.url)
    assert _grants(line) == [
        f"GRANT INSERT ON TABLE {AUDIT} TO {role.quoted}",
        f"GRANT USAGE ON SEQUENCE {SEQUENCE} TO {role.quoted}",
    ], line
    _take_advice(role, line)
    _goes_through(cli, project, role)


def test_no_create_on_the_schema_when_the_tables_do_not_exist(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """A first run: the history and audit tables must be created; without CREATE on the
    schema the refusal names that GRANT, quoted, and which tables need it."""
    write_migrations(project / "migrations", {"1_a": "SELECT 1;"})
    line = _migrate(cli, project, role.url)
    assert _grants(line) == [f'GRANT CREATE ON SCHEMA "public" TO {role.quoted}'], line
    assert f"(to create {HISTORY} and {AUDIT})" in line
    _take_advice(role, line)
    _goes_through(cli, project, role)
    assert query_value(database_url, "SELECT count(*) FROM _prisma_migrations") == 1


def test_a_missing_schema_needs_create_on_the_database(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """Prisma's ?schema=app, not there yet: CREATE on the database is named."""
    write_migrations(project / "migrations", {"1_a": "SELECT 1;"})
    line = _migrate(cli, project, f"{role.url}?schema=app")
    database = query_value(database_url, "SELECT current_database()")
    grants = _grants(line)
    assert grants == [f'GRANT CREATE ON DATABASE "{database}" TO {role.quoted}'], line
    assert f'CREATE SCHEMA "app" AUTHORIZATION {role.quoted}' in line


def test_rollback_and_resolve_name_their_grants_before_changing_anything(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """SELECT only: rollback (UPDATE on the history, the audit row) and resolve (INSERT,
    UPDATE) exit 2 naming them; nothing is undone or marked."""
    _applied_by_admin(database_url, project)
    role.grant(f"GRANT SELECT ON TABLE {HISTORY}")
    line = _refused(cli, project, role.url, "rollback", "--env", "staging", "--steps", "1", "--yes")
    assert f"GRANT UPDATE ON TABLE {HISTORY} TO {role.quoted}" in line, line
    assert f"GRANT INSERT ON TABLE {AUDIT} TO {role.quoted}" in line, line
    assert "nothing was undone" in line
    assert query_value(database_url, "SELECT to_regclass('a') IS NOT NULL") is True
    line = _refused(cli, project, role.url, "resolve", "--env", "staging", "--applied", "2_b")
    assert _grants(line) == [f"GRANT INSERT, UPDATE ON TABLE {HISTORY} TO {role.quoted}"], line
    assert query_value(database_url, "SELECT count(*) FROM _prisma_migrations") == 1


def _bookkeeper(database_url: str, project: Path, role: Role) -> None:
    """1_a applied by the superuser; ``role`` may keep the books and nothing more."""
    _applied_by_admin(database_url, project)
    role.grant(f"GRANT SELECT, INSERT, UPDATE ON TABLE {HISTORY}")
    role.grant(f"GRANT INSERT ON TABLE {AUDIT}")
    role.grant(f"GRANT USAGE ON SEQUENCE {SEQUENCE}")


def _denied(cli: Cli, project: Path, role: Role, *args: str) -> tuple[str, str]:
    """Exit 2, one line with the server's 42501 message and what to do; (line, stdout)."""
    done = cli(*args, env=project_env(role.url, project))
    line = one_line(done)
    assert done.returncode == 2, done.stderr
    assert "[42501]" in line and "fix the SQL" not in line, line
    return line, done.stdout


@pytest.mark.parametrize(
    ("script", "said", "advice"),
    [
        (
            "INSERT INTO a VALUES (1);",
            "permission denied for table a",
            "GRANT INSERT ON TABLE a TO",
        ),
        (
            "ALTER TABLE a ADD COLUMN x int;",
            "must be owner of table a",
            "only the owner of table a",
        ),
    ],
)
def test_a_migration_denied_by_the_server_is_exit_2_naming_the_privilege(
    cli: Cli, database_url: str, project: Path, role: Role, script: str, said: str, advice: str
) -> None:
    """The migration's own SQL needs a privilege the role lacks: exit 2 with the server's
    words and what to do, not 'fix the SQL'; it was rolled back, the runbook says this run
    changed nothing, and the audit row records the failure."""
    _bookkeeper(database_url, project, role)
    write_migrations(project / "migrations", {"2_b": script})
    args = ("migrate", "--env", "staging", "--yes", "--no-backup")
    line, stdout = _denied(cli, project, role, *args)
    assert said in line and advice in line and role.quoted in line, line
    assert "it was rolled back: it changed nothing" in line, line
    assert "this run changed nothing" in stdout, stdout
    assert query_value(database_url, "SELECT count(*) FROM _prisma_migrations") == 1
    outcome = query_value(database_url, "SELECT outcome FROM predeploy_runs ORDER BY id DESC")
    assert outcome == "failed: apply"


def test_a_migration_that_must_own_a_table_names_the_owning_role(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """ALTER TABLE on a table another role owns: the line names that role, looked up in
    the schema the statement named (a table of the same name in public is the admin's),
    quoted; the GRANT as printed lets the migration through."""
    _bookkeeper(database_url, project, role)
    owner = Role(database_url)
    try:
        role.admin('CREATE SCHEMA "Shop"')
        role.admin('CREATE TABLE "Shop".items (id int)')
        role.admin(
            sql.SQL('ALTER TABLE "Shop".items OWNER TO {}').format(sql.Identifier(owner.name))
        )
        role.admin("CREATE TABLE public.items (id int)")  # the admin's: not the one named
        role.grant('GRANT USAGE ON SCHEMA "Shop"')
        write_migrations(project / "migrations", {"2_b": 'ALTER TABLE "Shop".items ADD x int;'})
        args = ("migrate", "--env", "staging", "--yes", "--no-backup")
        line, _ = _denied(cli, project, role, *args)
        grant = f"GRANT {owner.quoted} TO {role.quoted}"
        assert "must be owner of table items" in line and grant in line, line
        assert f"run this migration as {owner.quoted}" in line, line
        role.admin(grant)
        _goes_through(cli, project, role)
    finally:
        owner.admin(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(owner.name)))
        owner.admin(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner.name)))


def test_a_table_a_superuser_owns_is_not_advised_as_a_grant_of_the_superuser(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """The owner is a superuser: never 'GRANT "postgres" TO ...'; the line names it and says
    to run as it, or to give the table to the application's role."""
    _bookkeeper(database_url, project, role)
    write_migrations(project / "migrations", {"2_b": "ALTER TABLE a ADD COLUMN x int;"})
    line, _ = _denied(cli, project, role, "migrate", "--env", "staging", "--yes", "--no-backup")
    admin = str(query_value(database_url, "SELECT current_user"))
    assert f'only the owner of table a, the superuser "{admin}", may do that' in line, line
    assert "OWNER TO" in line and f'GRANT "{admin}"' not in line, line


def test_a_denied_statement_outside_a_transaction_says_to_resolve(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """CREATE INDEX CONCURRENTLY on another role's table: exit 2, the row stays failed and
    the line says how to mark it; no INVALID index advice (none was left)."""
    _bookkeeper(database_url, project, role)
    write_migrations(project / "migrations", {"2_i": "CREATE INDEX CONCURRENTLY a_i ON a (id);"})
    args = ("migrate", "--env", "staging", "--yes", "--no-backup")
    line, _ = _denied(cli, project, role, *args)
    assert "must be owner of table a" in line and "resolve --rolled-back 2_i" in line, line
    assert "INVALID" not in line and "DROP INDEX" not in line, line


def test_a_down_sql_denied_by_the_server_is_exit_2(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """rollback whose down.sql drops another role's table: exit 2, nothing undone."""
    _bookkeeper(database_url, project, role)
    args = ("rollback", "--env", "staging", "--steps", "1", "--yes")
    line, _ = _denied(cli, project, role, *args)
    assert "rollback of 1_a failed" in line and "must be owner of table a" in line, line
    assert "nothing was undone" in line, line
    assert query_value(database_url, "SELECT to_regclass('a') IS NOT NULL") is True
    outcome = "SELECT outcome FROM predeploy_runs WHERE command = 'rollback'"
    assert query_value(database_url, outcome) == "failed"


def test_a_role_that_cannot_read_every_table_is_refused_before_the_backup(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """Books kept, but no SELECT on table a: pg_dump would fail after the run started;
    the gate says so first (exit 2, the table and the GRANT), and the GRANT as printed
    lets the backup and the run through."""
    _bookkeeper(database_url, project, role)
    line = _migrate(cli, project, role.url)
    assert '"public"."a"' in line and SEQUENCE in line, line
    grants = [  # PUBLIC has USAGE on public: not named
        f'GRANT SELECT ON ALL TABLES IN SCHEMA "public" TO {role.quoted}',
        f'GRANT SELECT ON ALL SEQUENCES IN SCHEMA "public" TO {role.quoted}',
    ]
    assert "; ".join(grants) in line and "no backup taken" in line, line
    for grant in grants:
        role.admin(grant)
    done = cli("migrate", "--env", "staging", "--yes", env=project_env(role.url, project))
    assert done.returncode == 0, done.stderr
    assert list((project / "backups").rglob("*.dump")), "the backup was taken"


def test_row_level_security_that_would_hide_rows_from_the_backup_is_refused(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """A table with row-level security the role is subject to: pg_dump refuses it, so the
    gate does first, naming BYPASSRLS."""
    _bookkeeper(database_url, project, role)
    role.admin("ALTER TABLE a ENABLE ROW LEVEL SECURITY")
    role.grant("GRANT SELECT ON ALL TABLES IN SCHEMA public")
    role.grant("GRANT SELECT ON ALL SEQUENCES IN SCHEMA public")
    line = _migrate(cli, project, role.url)
    assert f"ALTER ROLE {role.quoted} BYPASSRLS" in line and '"public"."a"' in line, line
    assert "GRANT SELECT" not in line, line


def test_a_rehearsal_denied_by_the_server_is_exit_2(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """--rehearse: the same 42501 is exit 2 with the same advice; nothing is kept."""
    _bookkeeper(database_url, project, role)
    write_migrations(project / "migrations", {"2_b": "INSERT INTO a VALUES (1);"})
    line, _ = _denied(cli, project, role, "migrate", "--env", "staging", "--rehearse", "--yes")
    assert "rehearsal failed" in line and "GRANT INSERT ON TABLE a TO" in line, line
    assert query_value(database_url, "SELECT count(*) FROM a") == 0


def test_a_down_sql_outside_a_transaction_denied_says_it_is_still_applied(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """DROP INDEX CONCURRENTLY of the admin's index: exit 2, the migration still applied,
    and no 'fix down.sql' (nothing in it is wrong)."""
    _bookkeeper(database_url, project, role)
    migrations = project / "migrations"
    write_migrations(migrations, {"2_i": "CREATE INDEX CONCURRENTLY a_i ON a (id);"})
    (migrations / "2_i" / "down.sql").write_text("DROP INDEX CONCURRENTLY a_i;\n")
    migrating.migrate(load_settings("staging", project, project_env(database_url, project)))
    args = ("rollback", "--env", "staging", "--steps", "1", "--yes")
    line, _ = _denied(cli, project, role, *args)
    assert "must be owner of index a_i" in line and 'run this rollback as "' in line, line
    assert "2_i is still recorded as applied: once it has the privilege, roll back" in line
    assert "fix down.sql" not in line, line
    assert query_value(database_url, "SELECT to_regclass('a_i') IS NOT NULL") is True


def test_a_schema_without_usage_names_usage_not_select(
    cli: Cli, database_url: str, project: Path, role: Role
) -> None:
    """Prisma's ?schema=app, every table privilege granted but not USAGE on app: status
    and migrate name GRANT USAGE ON SCHEMA "app" (not a SELECT it already has); granted,
    the run goes through."""
    migrations = project / "migrations"
    write_migrations(migrations, {"1_a": "CREATE TABLE t (id int);"})
    admin_env = project_env(f"{database_url}?schema=app", project)
    migrating.migrate(load_settings("staging", project, admin_env))
    # that run made app's audit table (app.predeploy_runs) beside its history table
    role.grant('GRANT SELECT, INSERT, UPDATE ON TABLE "app"."_prisma_migrations"')
    role.grant('GRANT INSERT ON TABLE "app"."predeploy_runs"')
    role.grant('GRANT USAGE ON SEQUENCE "app"."predeploy_runs_id_seq"')
    write_migrations(migrations, {"2_b": "SELECT 1;"})
    url = f"{role.url}?schema=app"
    usage = f'GRANT USAGE ON SCHEMA "app" TO {role.quoted}'
    for args in (("status", "--env", "staging"), ("migrate", "--env", "staging", "--yes")):
        line = _refused(cli, project, url, *args)
        assert line.endswith(usage), line
    role.admin(usage)
    done = cli("migrate", "--env", "staging", "--yes", "--no-backup", env=project_env(url, project))
    assert done.returncode == 0, done.stderr
