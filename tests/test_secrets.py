"""Issue 11, findings 5 and 6: no secret in a child's environment or argv, in output or
logs; a password from PGPASSWORD or ~/.pgpass works for backups as it does for psql.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import structlog
from psycopg import sql

from conftest import Cli
from hazards import (
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
from predeploy import log as log_mod

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


def test_log_scrubbing_covers_nested_and_encoded_values(tmp_path: Path) -> None:
    """A password nested in dicts, lists and objects, raw or percent-encoded, never reaches
    the log file or the screen."""
    password = SPECIAL
    screen = io.StringIO()
    setup = log_mod.configure(
        env="staging",
        log_dir=tmp_path / "logs",
        json_output=True,
        secrets=[password],
        stream=screen,
    )
    try:
        structlog.get_logger("t").warning(
            "nested",
            detail={"url": f"postgresql://app:{quote(password, safe='')}@h/db"},
            items=[("x", {"deep": [f"pw={password}"]})],
            plus=f"password={quote(password)}",
            error=ValueError(f"bad {password}"),
        )
    finally:
        structlog.reset_defaults()  # later tests log through their own configuration
    assert setup.log_file is not None
    for text in (setup.log_file.read_text(), screen.getvalue()):
        assert "nested" in text
        for form in forms(password):
            assert form not in text
        assert "***" in text
