"""No secret in a child's environment or argv, in output or
logs; a password from PGPASSWORD or ~/.pgpass works for backups as it does for psql.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from support.cli import Cli
from support.hazards import (
    Background,
    children,
    files_holding,
    holding,
    one_line,
    program_of,
    project_env,
    query_value,
    wait_until,
)
from support.project import write_migrations
from support.receivers import Receiver

# every character a URL must percent-encode, and the passfile's own separators
SPECIAL = "S3cr/et@Pa:ss%w#rd?x \\y"


def url_of(database_url: str, user: str, password: str | None) -> str:
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    secret = f":{quote(password, safe='')}" if password is not None else ""
    return f"postgresql://{user}{secret}@{info['host']}:{info['port']}/{info['dbname']}"


@pytest.fixture
def special(database_url: str) -> Iterator[tuple[str, str]]:
    """A superuser whose password needs percent-encoding; (its URL, the password)."""
    name = f"special_{uuid.uuid4().hex[:8]}"
    password = f"{SPECIAL}-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
        conn.execute("CREATE TABLE users (id int PRIMARY KEY)")
        conn.execute("INSERT INTO users SELECT generate_series(1, 100)")
    try:
        yield url_of(database_url, name, password), password
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (name,),
            )
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def forms(password: str) -> list[str]:
    """The password as written and in the forms a URL or a passfile would carry it."""
    return [password, quote(password, safe=""), quote(password), password.replace(":", "\\:")]


def test_children_of_a_backup_never_see_the_password(
    database_url: str, project: Path, special: tuple[str, str]
) -> None:
    """With DATABASE_URL exported, pg_dump's and pg_restore's /proc environ and cmdline hold
    no password (in any form) and no DATABASE_URL, while the dump waits for a lock; the
    backup then completes, and no file it left holds the password."""
    url, password = special
    (project / "migrations").mkdir()
    env = project_env(url, project, PREDEPLOY_LOCK_WAIT="20s")
    with holding(database_url, "LOCK TABLE users") as _pid:
        run = Background(project, "backup", "--env", "staging", "--json", env=env)
        try:
            wait_until(
                lambda: query_value(
                    database_url,
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND application_name = 'predeploy backup' AND query LIKE 'LOCK TABLE%%'",
                ),
                what="pg_dump to wait for users",
            )
            kids = {k: program_of(k) for k in children(run.pid)}
            assert {"pg_dump", "pg_restore"} <= set(kids.values()), kids
            seen = {
                k: (
                    Path(f"/proc/{k}/environ").read_bytes(),
                    Path(f"/proc/{k}/cmdline").read_bytes(),
                )
                for k in kids
            }
        except BaseException:
            run.kill()
            raise
    done = run.finish(30)
    assert done.returncode == 0, done.stderr
    for pid, (environ, cmdline) in seen.items():
        for form in forms(password):
            assert form.encode() not in environ, (kids[pid], "environ")
            assert form.encode() not in cmdline, (kids[pid], "cmdline")
        names = {entry.split(b"=", 1)[0] for entry in environ.split(b"\0") if entry}
        assert b"DATABASE_URL" not in names
        if kids[pid] == "pg_dump":
            passfile = dict(e.split(b"=", 1) for e in environ.split(b"\0") if b"=" in e)
            assert passfile[b"PGPASSFILE"].startswith(b"/dev/fd/")
    for form in forms(password):
        assert form not in done.stdout and form not in done.stderr
        assert files_holding(project, form) == []
    assert Path(json.loads(done.stdout)["path"]).is_file()


def test_pgpassword_alone_makes_a_backup_work(
    cli: Cli, database_url: str, project: Path, special: tuple[str, str]
) -> None:
    """A URL without a password and PGPASSWORD set: check and backup work, as with psql."""
    _, password = special
    user = special[0].split("://", 1)[1].split(":", 1)[0]
    (project / "migrations").mkdir()
    env = project_env(url_of(database_url, user, None), project, PGPASSWORD=password)
    checked = cli("check", "--env", "staging", env=env)
    assert checked.returncode == 0, checked.stderr
    done = cli("backup", "--env", "staging", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert Path(json.loads(done.stdout)["path"]).is_file()
    for form in forms(password):
        assert files_holding(project, form) == []


@pytest.mark.parametrize("how", ["HOME", "PGPASSFILE"])
def test_pgpass_file_alone_makes_a_backup_work(
    cli: Cli, database_url: str, project: Path, special: tuple[str, str], how: str
) -> None:
    """A URL without a password and a ~/.pgpass (HOME a temp folder), or a passfile named
    by PGPASSFILE: backup works."""
    _, password = special
    user = special[0].split("://", 1)[1].split(":", 1)[0]
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    home = project / "home"
    home.mkdir()
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    pgpass = home / ".pgpass"
    pgpass.write_text(f"{info['host']}:{info['port']}:*:{user}:{escaped}\n")
    pgpass.chmod(0o600)
    (project / "migrations").mkdir()
    where = {"HOME": str(home)} if how == "HOME" else {"PGPASSFILE": str(pgpass)}
    env = project_env(url_of(database_url, user, None), project, **where)
    done = cli("backup", "--env", "staging", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert Path(json.loads(done.stdout)["path"]).is_file()
    for form in forms(password):
        assert files_holding(project / "logs", form) == []
        assert files_holding(project / "backups", form) == []


# the parts of a password that an unencoded character cuts out of it
_CUT = {
    "slash": ("Secr3tPart/OtherHalf", ("Secr3tPart", "OtherHalf")),
    "at": ("Secr3tPart@OtherHalf", ("Secr3tPart", "OtherHalf")),
    "hash": ("Secr3tPart#OtherHalf", ("Secr3tPart", "OtherHalf")),
    "question": ("Secr3tPart?OtherHalf", ("Secr3tPart", "OtherHalf")),
    "percent": ("Secr3tPart%zzOtherHalf", ("Secr3tPart", "OtherHalf")),
}


@pytest.mark.parametrize("case", list(_CUT))
def test_unencoded_password_is_never_echoed(
    cli: Cli, database_url: str, project: Path, case: str
) -> None:
    """A URL whose password holds an unencoded special character: exit 2 with one line that
    says to percent-encode it, and no part of the password in the output or the logs."""
    password, parts = _CUT[case]
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    raw = f"postgresql://nobody:{password}@{info['host']}:{info['port']}/{info['dbname']}"
    (project / "migrations").mkdir()
    done = cli("check", "--env", "staging", env=project_env(raw, project))
    line = one_line(done)
    assert done.returncode == 2, done.stderr
    assert "percent-encode" in line, line
    for part in parts:
        assert part not in done.stdout and part not in done.stderr, line
        assert files_holding(project, part) == []


# No secret leaves through any channel. Each case below runs the product
# end to end and then greps every channel a secret could leave by: stdout, stderr, every file
# left under the project (but the migrations, which the user wrote), the audit table, and the
# notifications a local receiver got (whose request path is the webhook's own address).


def leaks(
    secrets: list[str],
    project: Path,
    done: list[subprocess.CompletedProcess[str]],
    database_url: str | None = None,
    receiver: Receiver | None = None,
) -> list[str]:
    """Where any of ``secrets`` was seen: one entry per channel that holds one."""
    found = []
    for form in secrets:
        for index, run in enumerate(done):
            found += [f"stdout {index}: {form}"] if form in run.stdout else []
            found += [f"stderr {index}: {form}"] if form in run.stderr else []
        found += [
            f"{path}: {form}"
            for path in files_holding(project, form)
            if "migrations" not in path.relative_to(project).parts
        ]
        if database_url is not None:
            with psycopg.connect(database_url) as conn:
                rows = conn.execute(
                    "SELECT r::text FROM predeploy_runs r WHERE to_regclass('predeploy_runs')"
                    " IS NOT NULL"
                ).fetchall()
            found += [f"audit row: {form}" for (row,) in rows if form in row]
        for _path, body in receiver.requests if receiver is not None else []:
            found += [f"notification: {form}"] if form.encode() in body else []
    return found


def audit_rows(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        return [row for (row,) in conn.execute("SELECT r::text FROM predeploy_runs r")]


@pytest.mark.usefixtures("apprise_loaded")
@pytest.mark.parametrize("json_output", [False, True])
def test_a_password_the_server_quotes_in_a_detail_leaves_no_trace(
    cli: Cli,
    database_url: str,
    project: Path,
    special: tuple[str, str],
    receiver: Receiver,
    json_output: bool,
) -> None:
    """A migration fails with a DETAIL that quotes the database password (a unique violation
    on a table holding it); a notification goes to json://.../hook/TOKEN: the error line, the
    report, the log file, the runbook, the audit row and the notification say what failed,
    and hold neither the password (in any form) nor the webhook's token."""
    url, password = special
    token = f"Hk{uuid.uuid4().hex[:8]}"
    write_migrations(
        project / "migrations",
        {
            "001_keep": (
                f"CREATE TABLE keep (v text UNIQUE);\nINSERT INTO keep VALUES ('{password}');\n"
            ),
            "002_again": f"INSERT INTO keep VALUES ('{password}');\n",
        },
    )
    env = project_env(
        url,
        project,
        PREDEPLOY_NOTIFY_URLS=receiver.url(f"/hook/{token}"),
        PREDEPLOY_NOTIFY_ON="all",
    )
    done = cli(
        "migrate", "--env", "staging", "--yes", *(["--json"] if json_output else []), env=env
    )
    assert done.returncode == 5, done.stderr
    assert "already exists" in done.stderr + done.stdout, done.stderr
    assert [path for path, _ in receiver.requests] == [f"/hook/{token}"]
    assert b"already exists" in receiver.requests[0][1]
    assert list((project / "logs").glob("runbook-*.txt")), "no runbook was written"
    assert audit_rows(database_url), "no audit row was written"
    found = leaks([*forms(password), token], project, [done], database_url, receiver)
    assert found == [], done.stderr


def test_a_create_role_password_that_stays_done_is_masked_in_the_runbook(
    cli: Cli, database_url: str, project: Path
) -> None:
    """A non-transactional migration runs CREATE ROLE ... PASSWORD '...' then fails: the
    runbook lists the statements that stay done, the password shown as '***', and no output,
    log or audit row holds it."""
    role = f"r_{uuid.uuid4().hex[:8]}"
    secret = f"RoleSecret{uuid.uuid4().hex[:10]}"
    write_migrations(
        project / "migrations",
        {
            "001_role": (
                "CREATE TABLE t (id int);\n"
                f"CREATE ROLE {role} LOGIN ENCRYPTED PASSWORD '{secret}';\n"
                "CREATE INDEX CONCURRENTLY t_id ON t (id);\n"
                "SELECT 1/0;\n"
            )
        },
    )
    try:
        done = cli("migrate", "--env", "staging", "--yes", env=project_env(database_url, project))
        json_done = cli(
            "status", "--env", "staging", "--json", env=project_env(database_url, project)
        )
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    assert done.returncode == 5, done.stderr
    (runbook,) = (project / "logs").glob("runbook-*.txt")
    text = runbook.read_text()
    assert "stay done" in text, text
    assert f"CREATE ROLE {role} LOGIN ENCRYPTED PASSWORD '***'" in text, text
    assert audit_rows(database_url)
    assert leaks([secret], project, [done, json_done], database_url) == []


def test_notification_tokens_never_leave_notify_test(
    cli: Cli, database_url: str, project: Path, receiver: Receiver
) -> None:
    """notify-test to json://host/hook/TOKEN (delivered), to a refused port and to Slack,
    Discord and Telegram URLs (undeliverable here): each result line names its URL with the
    tokens masked, in text and JSON; no token reaches a message body, the output or the logs."""
    tokens = [f"Tok{n}{uuid.uuid4().hex[:6]}" for n in range(8)]  # < 16: no "long token"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = sock.getsockname()[1]
    urls = [
        receiver.url(f"/hook/{tokens[0]}"),
        f"json://127.0.0.1:{refused}/hook/{tokens[1]}?+X-Token={tokens[2]}",
        f"slack://{tokens[3]}/B{tokens[4]}/{tokens[5]}/#ops",
        f"discord://1234567890123/{tokens[6]}",
        f"tgram://123456789:{tokens[7]}/-100200300",
    ]
    (project / "migrations").mkdir()
    env = project_env(
        database_url,
        project,
        PREDEPLOY_NOTIFY_URLS=",".join(urls),
        PREDEPLOY_NOTIFY_TIMEOUT="2s",
    )
    runs = [cli("notify-test", "--env", "staging", *flag, env=env) for flag in ([], ["--json"])]
    assert [run.returncode for run in runs] == [1, 1], runs[0].stderr
    assert runs[0].stdout.count("\n") == len(urls), runs[0].stdout
    assert f"json://127.0.0.1:{receiver.port}/hook/" in runs[0].stdout
    assert len(json.loads(runs[1].stdout)["deliveries"]) == len(urls)
    assert {path for path, _ in receiver.requests} == {f"/hook/{tokens[0]}"}
    assert leaks(tokens, project, runs, receiver=receiver) == []


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def failing_health() -> Iterator[int]:
    """A port whose HTTP server answers every GET with 503."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.usefixtures("apprise_loaded")
def test_a_health_url_token_never_leaves(
    cli: Cli, database_url: str, project: Path, receiver: Receiver, failing_health: int
) -> None:
    """PREDEPLOY_HEALTHCHECK_URL with user:password and ?key=TOKEN failing (503): health and
    maintenance say which URL failed, with its password and query values masked, in output,
    logs and the notification."""
    key, password = f"HealthKey{uuid.uuid4().hex[:8]}", f"HealthPw{uuid.uuid4().hex[:8]}"
    (project / "migrations").mkdir()
    env = project_env(
        database_url,
        project,
        PREDEPLOY_HEALTHCHECK_URL=(
            f"http://probe:{password}@127.0.0.1:{failing_health}/health?key={key}&v=1"
        ),
        PREDEPLOY_HEALTHCHECK_RETRIES="1",
        PREDEPLOY_NOTIFY_URLS=receiver.url("/hook/x"),
        PREDEPLOY_NOTIFY_ON="all",
    )
    runs = [
        cli("health", "--env", "staging", env=env),
        cli("health", "--env", "staging", "--json", env=env),
        cli("maintenance", "--env", "staging", "--json", env=env),
    ]
    assert [run.returncode for run in runs] == [7, 7, 1], runs[2].stderr
    shown = f"http://probe:***@127.0.0.1:{failing_health}/health?key=***&v=***"
    assert shown in runs[0].stdout + runs[0].stderr, runs[0].stdout + runs[0].stderr
    assert receiver.requests and b"503" in receiver.requests[0][1]
    assert leaks([key, password], project, runs, receiver=receiver) == []
