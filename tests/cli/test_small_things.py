"""The small things operators trip over, each against real PostgreSQL or HTTP."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from predeploy._util import log as log_mod
from predeploy._util import units
from predeploy.commands.health import check_http
from support.cli import Cli
from support.project import MakeSettings, write_migrations


def _env(database_url: str, migrations_dir: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir),
        "PREDEPLOY_BACKUP_DIR": str(tmp_path / "backups"),
        "PREDEPLOY_LOG_DIR": str(tmp_path / "logs"),
    }


def test_new_then_migrate_refuses_the_empty_template(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """predeploy new's template has no statements: migrate refuses it in every env, nothing
    applied, and once the SQL is written it applies (not burnt by the refusal)."""
    env = _env(database_url, migrations_dir, tmp_path)
    made = cli("new", "add_things", env=env)
    folder = Path(made.stdout.splitlines()[0])
    for name in ("dev", "staging"):
        refused = cli("migrate", "--env", name, "--yes", env=env)
        assert refused.returncode == 5, refused.stderr
        assert "has no SQL statements: write the migration or remove the folder" in refused.stderr
    (folder / "migration.sql").write_text("CREATE TABLE things (id int);\n")
    done = cli("migrate", "--env", "staging", "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["pending"][0]["has_down"] is False  # the comment-only down.sql is none
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('things')").fetchone() != (None,)


def test_reports_carry_no_sql_and_dry_runs_scrub_secrets(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """A migration holding PASSWORD 'x': the --json report of migrate has no SQL; a dry run
    shows the SQL with the connection's own password replaced."""
    password = database_url.split(":")[2].split("@", maxsplit=1)[0]
    write_migrations(
        migrations_dir,
        {"1_role": f"CREATE ROLE reporting LOGIN PASSWORD 'x-{password}-x';\nDROP ROLE reporting;"},
    )
    env = _env(database_url, migrations_dir, tmp_path)
    done = cli("migrate", "--env", "staging", "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert "PASSWORD" not in done.stdout and password not in done.stdout
    assert "sql" not in json.loads(done.stdout)["pending"][0]
    write_migrations(migrations_dir, {"2_again": f"SELECT 'x-{password}-x';"})
    dry = cli("migrate", "--env", "staging", "--dry-run", "--json", env=env)
    (pending,) = json.loads(dry.stdout)["pending"]
    assert pending["sql"] == "SELECT 'x-***-x';"
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert password not in logs


def test_a_dangling_symlink_in_the_migrations_folder_is_named(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """A migration folder that is a symlink to nowhere: exit 2 naming it, nothing applied."""
    write_migrations(migrations_dir, {"1_a": "CREATE TABLE a (id int);"})
    (migrations_dir / "2_b").symlink_to(tmp_path / "gone")
    done = cli(
        "migrate", "--env", "staging", "--yes", env=_env(database_url, migrations_dir, tmp_path)
    )
    assert done.returncode == 2
    assert "dangling symlink(s)" in done.stderr and "2_b" in done.stderr


def test_a_failed_concurrent_index_keeps_detail_and_says_how_to_clean_up(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """CREATE UNIQUE INDEX CONCURRENTLY on duplicates: PostgreSQL's DETAIL is kept, the
    INVALID index it leaves is named with the DROP INDEX CONCURRENTLY that removes it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE dup (v int); INSERT INTO dup VALUES (1), (1)")
    write_migrations(
        migrations_dir, {"1_unique": "CREATE UNIQUE INDEX CONCURRENTLY dup_v ON dup (v);"}
    )
    done = cli(
        "migrate", "--env", "staging", "--yes", env=_env(database_url, migrations_dir, tmp_path)
    )
    assert done.returncode == 5
    line = done.stderr.strip().splitlines()[-1]
    assert "DETAIL: Key (v)=(1) is duplicated." in line
    assert 'DROP INDEX CONCURRENTLY "public"."dup_v"' in line
    assert ";;" not in line
    with psycopg.connect(database_url, autocommit=True) as conn:  # advice taken; a valid one
        conn.execute("DROP INDEX dup_v; DELETE FROM dup; CREATE UNIQUE INDEX dup_v ON dup (v)")
    resolved = cli("resolve", "--env", "staging", "--rolled-back", "1_unique",
                   env=_env(database_url, migrations_dir, tmp_path))  # fmt: skip
    assert resolved.returncode == 0, resolved.stderr
    again = cli(
        "migrate", "--env", "staging", "--yes", env=_env(database_url, migrations_dir, tmp_path)
    )
    line = again.stderr.strip().splitlines()[-1]
    assert again.returncode == 5 and "[42P07]" in line, again.stderr
    assert "DROP INDEX" not in line and "was not built by this run" in line  # it is valid


@pytest.fixture
def basic_auth_server() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """An HTTP server on 127.0.0.1 that answers 200 only with Basic alice:s3cret."""
    seen: list[dict[str, Any]] = []
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
            self.send_response(200 if self.headers.get("Authorization") == expected else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_health_url_credentials_go_as_basic_auth_and_loopback_skips_the_proxy(
    basic_auth_server: tuple[int, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """user:password in the health URL is Basic auth, shown redacted; http_proxy pointing at
    a dead proxy does not matter for a loopback URL."""
    port, seen = basic_auth_server
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    check = check_http(f"http://alice:s3cret@127.0.0.1:{port}/health", timeout=2, retries=1)
    assert check.ok, check.detail
    assert "s3cret" not in check.detail and "alice:***@" in check.detail
    assert seen == [
        {"path": "/health", "auth": "Basic " + base64.b64encode(b"alice:s3cret").decode()}
    ]


def test_maintenance_prunes_old_logs_and_runbooks_only(tmp_path: Path) -> None:
    """Run logs and runbooks older than the kept days go; other files stay."""
    logs = tmp_path / "logs"
    logs.mkdir()
    old = [logs / "predeploy-prod-20200101T000000Z-abc.log", logs / "runbook-prod-abc.txt"]
    kept = [logs / "predeploy-prod-20261201T000000Z-def.log", logs / "notes.txt"]
    for path in [*old, *kept]:
        path.write_text("x\n")
    past = time.time() - 100 * 86400
    for path in [*old, logs / "notes.txt"]:
        os.utime(path, (past, past))
    assert sorted(log_mod.prune(logs, 90)) == sorted(old)
    assert all(p.exists() for p in kept)
    assert log_mod.prune(logs, 0) == []


def test_the_audit_row_says_how_the_run_ended(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """A failed run's audit row names the failed step and carries the error line."""
    write_migrations(migrations_dir, {"1_bad": "CREATE TABLE (;"})
    env = _env(database_url, migrations_dir, tmp_path)
    assert cli("migrate", "--env", "staging", "--yes", env=env).returncode == 5
    with psycopg.connect(database_url) as conn:
        outcome, detail = conn.execute("SELECT outcome, detail FROM predeploy_runs").fetchone()
    assert outcome == "failed: apply"
    assert "migration 1_bad failed at line 1" in detail


def test_one_size_formatter() -> None:
    """Binary units, labelled as such."""
    assert [units.size(n) for n in (0, 1023, 1536, 5 * 1024**2, 3 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]


def test_json_log_lines_carry_env_and_run_id_even_from_threads(
    cli: Cli, database_url: str, migrations_dir: Path, tmp_path: Path
) -> None:
    """Every event of a backup run's log file (progress reports included) has env and run id."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE big AS SELECT g, md5(g::text) m FROM generate_series(1, 300000) g"
        )
    env = _env(database_url, migrations_dir, tmp_path)
    assert cli("backup", "--env", "staging", env=env).returncode == 0
    (log_file,) = (tmp_path / "logs").glob("predeploy-staging-*.log")
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert events and all(e.get("env") == "staging" and e.get("run_id") for e in events)


def test_a_long_run_lists_its_migrations_briefly_and_rolls_back_each(
    make_settings: MakeSettings,
) -> None:
    """434 applied migrations: the comment names the newest and oldest few and the count;
    the rollback command still names every one of them."""
    from predeploy.commands.runbook import build_runbook  # noqa: PLC0415
    from predeploy.migrate.outcome import Applied  # noqa: PLC0415

    names = [f"{i:04d}_step" for i in range(434)]
    runbook = build_runbook(
        make_settings(),
        backup=None,
        applied=[Applied(name, 0.01, True, 1) for name in names],
        error=None,
        run_id="r1",
        has_down=dict.fromkeys(names, True),
    )
    intro = runbook.commands[0]
    assert intro == (
        "# this run applied 434 migration(s): 0433_step, 0432_step, 0431_step, ..., "
        "0001_step, 0000_step (434 in all)"
    )
    rollback = next(line for line in runbook.commands if "rollback" in line)
    assert rollback.count("_step") == 434
