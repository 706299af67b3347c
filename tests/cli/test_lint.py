"""Lint: squawk's JSON mapped to our severities with live table sizes; waivers; the prod
policy; and the blocker scan against real held locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from predeploy.commands.lint import lint
from predeploy.migrate import blockers
from predeploy.migrate import discovery as migrations
from predeploy.migrate.lint import MOOT
from support.cli import Cli
from support.project import MakeSettings, write_migrations
from support.terminal import run_in_terminal

CORPORA = Path(__file__).resolve().parents[1] / "data" / "corpora"

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


@pytest.fixture
def events(database_url: str) -> str:
    """Tables users and events (5,000 rows, analysed) in the test's database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (id bigint PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE events AS SELECT g::bigint AS id, now() AS at, 'x'::text AS body,"
            " 1::bigint AS user_id FROM generate_series(1, 5000) g"
        )
        conn.execute("ANALYZE events")
    return database_url


def test_each_dangerous_statement_maps_to_its_rule_and_size(
    make_settings: MakeSettings, migrations_dir: Path, events: str
) -> None:
    write_migrations(migrations_dir, {name: sql for name, (sql, _, _) in DANGEROUS.items()})
    report = lint(make_settings("staging")).report
    found = {(f.migration, f.rule): f for f in report.findings}
    for name, (_, rule, severity) in DANGEROUS.items():
        finding = found[(name, rule)]
        assert finding.severity == severity, (name, finding)
        assert finding.line == 1 and not finding.raised
    index = found[("1_index", "require-concurrent-index-creation")]
    assert [(t.table, t.rows) for t in index.tables] == [("public.events", 5000)]
    assert index.statement == "CREATE INDEX events_at ON events (at)"
    fk = found[("4_fk", "adding-foreign-key-constraint")]
    assert [t.table for t in fk.tables] == ["public.events", "public.users"]  # largest first
    assert not {f.rule for f in report.findings} & set(MOOT)  # the runner sets both timeouts
    data = report.as_dict()
    assert [f["migration"] for f in data["files"]] == list(DANGEROUS)
    assert data["files"][5]["transactional"] is False


def test_a_large_table_raises_the_severity(
    make_settings: MakeSettings, migrations_dir: Path, events: str
) -> None:
    write_migrations(migrations_dir, {"1_index": DANGEROUS["1_index"][0]})
    report = lint(make_settings("staging", PREDEPLOY_LINT_LARGE_TABLE_ROWS="5000")).report
    (finding,) = [f for f in report.findings if f.rule == "require-concurrent-index-creation"]
    assert (finding.severity, finding.raised) == ("error", True)
    assert report.errors == [finding]


def test_robustness_matters_only_outside_a_transaction(
    make_settings: MakeSettings, migrations_dir: Path, events: str
) -> None:
    write_migrations(
        migrations_dir,
        {
            "1_in": "CREATE TABLE a (id bigint);",
            "2_out": "CREATE INDEX CONCURRENTLY events_body ON events (body);",
        },
    )
    report = lint(make_settings("staging")).report
    robust = [(f.migration, f.severity) for f in report.findings if f.rule == "prefer-robust-stmts"]
    assert robust == [("2_out", "info")]


def test_waiver_silences_a_rule_for_its_file_and_is_shown(
    cli: Cli, database_url: str, migrations_dir: Path, events: str, tmp_path: Path
) -> None:
    write_migrations(
        migrations_dir,
        {
            "1_index": "-- predeploy: allow require-concurrent-index-creation\n"
            + DANGEROUS["1_index"][0],
            "2_index": "CREATE INDEX events_body ON events (body);",
        },
    )
    env = {"DATABASE_URL": database_url, "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir)}
    done = cli(
        "lint", "--env", "prod", "--json", env=env | {"PREDEPLOY_LINT_LARGE_TABLE_ROWS": "100"}
    )
    assert done.returncode == 1  # 2_index's finding is an error on a large table
    data = json.loads(done.stdout)
    first, second = data["files"]
    assert first["waivers"] == ["require-concurrent-index-creation"]
    assert [(f["rule"], f["waived"]) for f in first["findings"]] == [
        ("require-concurrent-index-creation", True)
    ]
    assert [(f["severity"], f["waived"]) for f in second["findings"]] == [("error", False)]
    assert data["counts"]["waived"] == 1
    assert "lint found 1 error(s): 2_index require-concurrent-index-creation" in done.stderr


def test_prod_migrate_refuses_lint_errors_unless_forced(
    cli: Cli, database_url: str, migrations_dir: Path, events: str, tmp_path: Path
) -> None:
    write_migrations(migrations_dir, {"1_index": DANGEROUS["1_index"][0]})
    env = {
        "DATABASE_URL": database_url,
        "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir),
        "PREDEPLOY_LINT_LARGE_TABLE_ROWS": "1000",
        "PREDEPLOY_BACKUP_DIR": str(tmp_path / "backups"),
        "PREDEPLOY_LOG_DIR": str(tmp_path / "logs"),
    }
    refused = cli("migrate", "--env", "prod", "--yes", "--allow-drift", env=env)
    assert refused.returncode == 1
    assert (
        "lint found 1 error(s) in prod (protected): 1_index require-concurrent-index-creation"
        in refused.stderr
    )
    assert not (tmp_path / "backups").exists()  # refused before the backup
    staging = cli("migrate", "--env", "staging", "--yes", "--dry-run", "--json", env=env)
    assert staging.returncode == 0  # elsewhere findings are shown, not enforced
    assert json.loads(staging.stdout)["lint"]["counts"]["error"] == 1
    forced = cli("migrate", "--env", "prod", "--yes", "--force-lint", "--allow-drift", env=env)
    assert forced.returncode == 0, forced.stderr
    log = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    forced_events = [json.loads(x) for x in log.splitlines() if '"lint_forced"' in x]
    assert forced_events and forced_events[0]["operator"]


def test_a_syntax_error_is_an_error_on_its_own_line_and_prod_refuses_before_the_backup(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """squawk's syntax-error was a warning quoting the file's first statement, and the dry
    run counted "1 statement(s)": when PostgreSQL's parser agrees it is an error quoting the
    bad line, prod refuses before its backup, and the dry run says the file does not parse."""
    bad = "CREATE TABLE b (id bigint);\nALTER TABLE b ADD COLUMN x integr DEFAULT 0 ,;\n"
    write_migrations(migrations_dir, {"1_bad": bad})
    env = {
        "DATABASE_URL": database_url,
        "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir),
        "PREDEPLOY_BACKUP_DIR": str(tmp_path / "backups"),
    }
    dry = cli("migrate", "--env", "staging", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "1_bad  ? statement(s) (it does not parse)" in dry.stdout
    found = json.loads(cli("lint", "--json", env=env).stdout)["files"][0]["findings"]
    column = bad.split("\n")[1].index(";") + 1  # where the server says it is
    assert [(f["rule"], f["severity"], f["line"], f["column"]) for f in found] == [
        ("syntax-error", "error", 2, column)
    ]
    applied = cli("migrate", "--env", "staging", "--yes", "--no-backup", env=env)
    assert applied.returncode == 5 and f"at line 2, column {column} " in applied.stderr
    assert found[0]["statement"] == "ALTER TABLE b ADD COLUMN x integr DEFAULT 0 ,;"
    assert 'syntax error at or near ";"' in found[0]["message"]
    refused = cli("migrate", "--env", "prod", "--yes", "--allow-drift", env=env)
    assert refused.returncode == 1, refused.stderr
    assert "lint found 1 error(s) in prod (protected): 1_bad syntax-error" in refused.stderr
    assert not (tmp_path / "backups").exists()


def test_lint_findings_show_before_the_confirmation(
    project: Path, database_url: str, events: str
) -> None:
    write_migrations(project / "migrations", {"1_index": DANGEROUS["1_index"][0]})
    env = {"DATABASE_URL": database_url, "PREDEPLOY_BACKUP_DIR": str(project / "backups")}
    code, screen = run_in_terminal(
        [sys.executable, "-m", "predeploy", "migrate", "--env", "staging"],
        cwd=project,
        env={**os.environ, **env},
        answer="n",
        prompt=b"[y/N]",
    )
    assert code == 8
    before_prompt = screen[: screen.index("[y/N]")]
    assert "Lint (1 finding(s): 0 error(s), 1 warning(s), 0 info, 0 waived):" in before_prompt
    assert (
        "warning 1_index:1 require-concurrent-index-creation (public.events ~5,000 rows)"
        in before_prompt
    )


@pytest.mark.slow
def test_langfuse_corpus_findings_per_file(cli: Cli, database_url: str) -> None:
    corpus = CORPORA / "langfuse" / "migrations"
    env = {"DATABASE_URL": database_url, "PREDEPLOY_MIGRATIONS_DIR": str(corpus)}
    done = cli("lint", "--env", "staging", "--all", "--json", env=env)
    assert done.returncode in (0, 1), done.stderr
    data = json.loads(done.stdout)
    assert len(data["files"]) == 434
    rules = {f["rule"] for item in data["files"] for f in item["findings"]}
    assert "require-concurrent-index-creation" in rules or "prefer-robust-stmts" in rules
    assert not rules & set(MOOT)
    assert sum(len(item["findings"]) for item in data["files"]) == sum(
        n for n in data["counts"].values()
    )


def hold(url: str, sql: str, ready: threading.Event, release: threading.Event) -> None:
    with psycopg.connect(url, application_name="reporting") as conn:
        conn.execute(sql)
        ready.set()
        release.wait(30)


def test_blocker_scan_names_a_session_idle_in_transaction(
    make_settings: MakeSettings, migrations_dir: Path, events: str
) -> None:
    write_migrations(migrations_dir, {"1_type": DANGEROUS["2_type"][0]})
    ready, release = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=hold, args=(events, "SELECT count(*) FROM events", ready, release)
    )
    thread.start()
    try:
        assert ready.wait(10)
        time.sleep(0.2)
        with psycopg.connect(events, autocommit=True) as conn:
            pending = migrations.discover(migrations_dir)
            assert blockers.tables_of(pending) == {"events"}
            (found,) = blockers.scan(conn, blockers.tables_of(pending), max_age=60)
            other = blockers.scan(conn, {"users"}, max_age=60)
    finally:
        release.set()
        thread.join()
    assert (found.application, found.state, found.tables) == (
        "reporting",
        "idle in transaction",
        ("events",),
    )
    assert found.query == "SELECT count(*) FROM events" and found.query_start is not None
    assert other == []
    assert "application reporting, idle in transaction" in blockers.describe(found)


def test_prod_with_yes_waits_for_blockers_then_exits_5_naming_them(
    cli: Cli, project: Path, database_url: str, migrations_dir: Path, events: str, tmp_path: Path
) -> None:
    write_migrations(migrations_dir, {"1_type": DANGEROUS["2_type"][0]})
    env = {
        "DATABASE_URL": database_url,
        "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir),
        "PREDEPLOY_BACKUP_DIR": str(tmp_path / "backups"),
        "PREDEPLOY_BLOCKER_WAIT": "1s",
    }
    ready, release = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=hold, args=(events, "SELECT count(*) FROM events", ready, release)
    )
    thread.start()
    try:
        assert ready.wait(10)
        blocked = cli("migrate", "--env", "prod", "--yes", "--allow-drift", env=env)
        # the next run waits for it; once it has seen the blocker, the blocker ends
        log = tmp_path / "waited.log"
        with log.open("w") as stderr:
            waited = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "predeploy",
                    "migrate",
                    "--env",
                    "prod",
                    "--yes",
                    "--allow-drift",
                ],
                cwd=project,
                env={**os.environ, **env, "PREDEPLOY_BLOCKER_WAIT": "30s"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
            deadline = time.monotonic() + 30
            while '"event": "blocker"' not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            release.set()
            waited.wait(timeout=60)
    finally:
        release.set()
        thread.join()
    assert blocked.returncode == 5
    assert (
        "still hold or wait for locks on the tables to migrate after 1s (PREDEPLOY_BLOCKER_WAIT)"
        in blocked.stderr
    )
    assert "application reporting, idle in transaction" in blocked.stderr
    assert "nothing was applied" in blocked.stderr
    assert waited.returncode == 0, log.read_text()
    events_seen = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events_seen.index("blocker") < events_seen.index("blockers_gone")
    assert "migration_applied" in events_seen


def test_prod_on_a_terminal_asks_about_blockers(
    project: Path, database_url: str, events: str
) -> None:
    write_migrations(project / "migrations", {"1_type": DANGEROUS["2_type"][0]})
    env = {"DATABASE_URL": database_url, "PREDEPLOY_BACKUP_DIR": str(project / "backups")}
    name = database_url.rsplit("/", 1)[1]
    ready, release = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=hold, args=(events, "SELECT count(*) FROM events", ready, release)
    )
    thread.start()
    try:
        assert ready.wait(10)
        code, screen = run_in_terminal(
            [sys.executable, "-m", "predeploy", "migrate", "--env", "prod"],
            cwd=project,
            env={**os.environ, **env},
            dialogue=[(b"to go on: ", name), (b"[y/N]", "n")],
        )
    finally:
        release.set()
        thread.join()
    assert code == 8, screen
    asked = screen[screen.index("Sessions that would block") : screen.rindex("[y/N]")]
    assert "application reporting, idle in transaction" in asked
    assert "on events): SELECT count(*) FROM events" in asked
    with psycopg.connect(database_url) as conn:
        (kind,) = conn.execute(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'events' AND column_name = 'body'"
        ).fetchone() or ("?",)
    assert kind == "text"  # nothing applied
