"""Safety follows the database, not the env name.

A database a protected env has changed remembers it, and a bare command (env dev) gets the
protected policy there, or refuses naming the env it was deployed as. Dev's relaxed policy
holds without a word only on the embedded server or a loopback/socket database.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from predeploy.config.policy import Place as Seen
from predeploy.config.policy import for_target, is_local, make_policy
from predeploy.config.settings import load_settings
from support.cli import Cli
from support.servers import Target
from support.terminal import run_in_terminal
from support.wayback import Site, execute, report, write

USERS = ("CREATE TABLE users (id int PRIMARY KEY);", "DROP TABLE users;")
POSTS = ("CREATE TABLE posts (id int PRIMARY KEY);", "DROP TABLE posts;")

# --- the decision, as a table -------------------------------------------------------

LOCAL = Seen("app", "127.0.0.1:5432", local=True)
REMOTE = Seen("app", "192.0.2.7:5432", local=False)
PROD_MARKED = Seen("app", "192.0.2.7:5432", local=False, deployed_as="prod", marked=True)
LOCAL_MARKED = Seen("app", "/run/postgresql/.s.PGSQL.5432", local=True, deployed_as="prod")

# (protected, confirmation, backup required, inherited from the database, cautioned)
RELAXED = (False, "none", False, False, False)
ASKS = (False, "yes", True, False, False)
ASKS_REMOTE = (False, "yes", True, False, True)
PROTECTED = (True, "typed", True, False, False)
REMEMBERED = (True, "typed", True, True, True)


@pytest.mark.parametrize(
    ("env", "setting", "target", "expected"),
    [
        ("dev", None, LOCAL, RELAXED),
        ("dev", None, REMOTE, ASKS_REMOTE),
        ("dev", False, REMOTE, RELAXED),  # PREDEPLOY_PROTECTED=0: a scratch database
        ("dev", None, PROD_MARKED, REMEMBERED),
        ("dev", None, LOCAL_MARKED, REMEMBERED),  # a tunnel to production, or the same box
        ("dev", False, PROD_MARKED, REMEMBERED),  # =0 never lifts what the database remembers
        ("staging", None, REMOTE, ASKS),
        ("staging", None, PROD_MARKED, REMEMBERED),
        ("prod", None, LOCAL, PROTECTED),
        ("prod", None, PROD_MARKED, PROTECTED),
        ("prod", False, REMOTE, ASKS),
        ("prod", False, PROD_MARKED, REMEMBERED),
        ("dev", True, LOCAL, PROTECTED),
    ],
)
def test_the_policy_follows_the_target(
    env: str, setting: bool | None, target: Seen, expected: tuple[object, ...]
) -> None:
    """The env's policy, raised by what the database remembers and by where it is."""
    base = make_policy(env, protected=setting, allow_no_backup=False)
    policy = for_target(base, target, scratch=setting is False)
    found = (
        policy.protected,
        policy.confirmation,
        policy.backup_required,
        policy.inherited,
        policy.caution is not None,
    )
    assert found == expected, policy
    assert policy.target == target.where
    assert policy.drift_checked is policy.lint_errors_block is policy.protected
    if policy.inherited:
        assert (
            policy.caution == f"app was deployed as prod: the protected policy applies (env {env})"
        )
        assert not policy.no_backup_allowed and not policy.marks
    if expected == ASKS_REMOTE:
        assert "192.0.2.7:5432" in str(policy.caution)
        assert "PREDEPLOY_PROTECTED=0" in str(policy.caution)


@pytest.mark.parametrize(
    ("env", "target", "marks"),
    [
        ("prod", LOCAL, True),
        ("prod", PROD_MARKED, False),  # it already says prod
        ("prod", LOCAL_MARKED, True),  # only audit rows say so: the marker is written
        ("production", PROD_MARKED, True),  # the newest protected env's name
        ("dev", PROD_MARKED, False),  # a dev run never marks, nor rewrites prod's marker
        ("staging", LOCAL, False),
    ],
)
def test_which_runs_mark_the_database(env: str, target: Seen, marks: bool) -> None:
    """Protected envs mark a database (once); the others never do."""
    base = make_policy(env, protected=None, allow_no_backup=False)
    assert for_target(base, target, scratch=False).marks is marks


def test_allow_no_backup_carries_over_to_a_remembered_database() -> None:
    """PREDEPLOY_ALLOW_NO_BACKUP=1 opens --no-backup on a remembered database as in prod."""
    base = make_policy("dev", protected=None, allow_no_backup=True)
    policy = for_target(base, PROD_MARKED, scratch=False, allow_no_backup=True)
    assert policy.protected and policy.no_backup_allowed


@pytest.mark.parametrize(
    ("host", "hostaddr", "local"),
    [
        (None, None, True),  # the embedded server
        ("localhost", None, True),
        ("LOCALHOST", None, True),
        ("127.0.0.1", None, True),
        ("127.1.2.3", None, True),
        ("::1", None, True),
        ("[::1]", None, True),
        ("/var/run/postgresql", None, True),
        ("@abstract", None, True),
        ("db.internal", None, False),
        ("192.0.2.7", None, False),
        ("10.0.0.5", None, False),
        ("fd00::2", None, False),
        ("localhost", "10.0.0.5", False),  # libpq connects to hostaddr, not the name
        ("db.internal", "127.0.0.1", True),
    ],
)
def test_which_databases_are_local(host: str | None, hostaddr: str | None, local: bool) -> None:
    """Embedded, sockets, localhost and loopback addresses are local; the rest is not."""
    assert is_local(host, hostaddr) is local


# --- end to end -----------------------------------------------------------------------


@pytest.fixture
def site(target: Target, project: Path) -> Site:
    return Site(project, target.url, target.env)


def _bare(site: Site, *args: str, **values: str) -> subprocess.CompletedProcess[str]:
    """A command without --env and without PREDEPLOY_ENV: env dev."""
    return site.run(*args, **values)


def _tables(url: str, schema: str = "public") -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
        return {t for (t,) in rows} - {"_prisma_migrations", "predeploy_runs"}


def _marker(url: str, schema: str = "public") -> dict[str, str] | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT obj_description(to_regclass(%s), 'pg_class')", (f"{schema}.predeploy_runs",)
        ).fetchone()
    text = row[0] if row else None
    prefix = "predeploy protected: "
    return json.loads(text[len(prefix) :]) if text and text.startswith(prefix) else None


def _ok(found: dict[str, object]) -> None:
    assert found["exit_code"] == 0, found["stderr"]


def _dumps(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dump")) if folder.is_dir() else []


def test_a_database_deployed_as_prod_keeps_prods_policy(site: Site) -> None:
    """migrate --env prod marks the database; a bare migrate there (env dev) is refused
    without a terminal (exit 8, naming prod, nothing applied, no backup), PREDEPLOY_PROTECTED=0
    does not lift it, and with --yes it backs up first and applies."""
    write(site.migrations, "1_users", *USERS)
    _ok(site.migrate("prod"))
    marker = _marker(site.url)
    assert marker is not None and marker["env"] == "prod" and marker["command"] == "migrate"
    assert marker["operator"] and marker["at"]
    write(site.migrations, "2_posts", *POSTS)
    for values in ({}, {"PREDEPLOY_PROTECTED": "0"}):
        refused = _bare(site, "migrate", **values)
        assert refused.returncode == 8, refused.stderr
        line = refused.stderr.strip().splitlines()[-1]
        assert "was deployed as prod: the protected policy applies (env dev)" in line, line
        assert "nothing was done" in line
        assert _tables(site.url) == {"users"}
    assert _dumps(site.backups / "dev") == []
    done = _bare(site, "migrate", "--yes", "--json")
    found = report(done)
    assert done.returncode == 0, done.stderr
    assert found["backup"]["path"].startswith(str(site.backups / "dev"))
    assert Path(found["backup"]["path"]).is_file()
    assert found["policy"]["protected"] and found["policy"]["deployed_as"] == "prod"
    assert _tables(site.url) == {"users", "posts"}
    assert _marker(site.url)["env"] == "prod"  # type: ignore[index] # a dev run keeps prod's


def test_the_first_prod_run_into_a_new_schema_marks_it(database_url: str, project: Path) -> None:
    """migrate --env prod with ?schema= of a schema that does not exist yet: the run creates
    it and marks it (the marker was lost: "schema does not exist"), so a bare migrate there
    is refused naming prod."""
    site = Site(project, f"{database_url}?schema=tenant1", {})
    write(site.migrations, "1_users", *USERS)
    _ok(site.migrate("prod"))
    assert _marker(database_url, "tenant1") is not None
    write(site.migrations, "2_posts", *POSTS)
    refused = _bare(site, "migrate")
    assert refused.returncode == 8, refused.stderr
    assert "was deployed as prod" in refused.stderr.strip().splitlines()[-1]
    assert _tables(database_url, "tenant1") == {"users"}


def test_a_remembered_database_asks_for_its_name_on_a_terminal(site: Site) -> None:
    """On a terminal, a bare migrate on a database deployed as prod asks for its name typed
    (y is not enough), and its checklist says which database and why."""
    write(site.migrations, "1_users", *USERS)
    _ok(site.migrate("prod"))
    write(site.migrations, "2_posts", *POSTS)
    name = site.url.rsplit("/", 1)[1]
    argv = [sys.executable, "-m", "predeploy", "migrate"]
    env = {**_clean(), **site.env}
    code, screen = run_in_terminal(argv, cwd=site.project, env=env, prompt=b"to go on:", answer="y")
    assert code == 8, screen
    assert f"{name} on " in screen and "protected (deployed as prod)" in screen
    assert _tables(site.url) == {"users"}
    code, screen = run_in_terminal(
        argv, cwd=site.project, env=env, prompt=b"to go on:", answer=name
    )
    assert code == 0, screen
    assert _tables(site.url) == {"users", "posts"}
    # the caution is one plain sentence on the screen, and a structured event in the log
    caution = f"warning: {name} was deployed as prod: the protected policy applies (env dev)"
    assert _visible(screen).count(caution) == 1, screen
    assert "policy_from_target" not in screen, screen
    events = [
        json.loads(line)
        for log in (site.project / "logs").glob("predeploy-dev-*.log")
        for line in log.read_text().splitlines()
    ]
    said = [e for e in events if e["event"] == "policy_from_target"]
    assert len(said) == 2 and "sentence" not in said[0], said  # one per run
    assert said[0]["detail"] == caution.removeprefix("warning: ")
    # the backup's progress line is gone once the backup step ends
    assert not [line for line in _visible(screen).splitlines() if line.startswith("dump:")], screen


def _visible(screen: str) -> str:
    """What a terminal shows of ``screen``: a carriage return goes back to the line's start
    (what follows overwrites), ESC [K erases to its end."""
    lines = []
    for raw in screen.replace("\r\n", "\n").split("\n"):
        line: list[str] = []
        column = 0
        for part in re.split(r"(\r|\x1b\[K)", raw):
            if part == "\r":
                column = 0
            elif part == "\x1b[K":
                del line[column:]
            else:
                line[column : column + len(part)] = list(part)
                column += len(part)
        lines.append("".join(line))
    return "\n".join(lines)


def test_a_remembered_database_rolls_back_only_after_a_backup(
    target: Target, project: Path
) -> None:
    """With ?schema=tenant: migrate --env prod marks tenant's audit table; a bare rollback is
    refused without a terminal (8, naming prod, nothing undone), --no-backup is refused (2),
    and --yes takes a verified backup first and the runbook names it."""
    site = Site(project, target.url + "?schema=tenant", target.env)
    execute(target.url, "CREATE SCHEMA tenant")  # fresh, a prod run's drift check says missing
    write(site.migrations, "1_users", *USERS)
    write(site.migrations, "2_posts", *POSTS)
    _ok(site.migrate("prod"))
    assert _marker(target.url, "tenant")["env"] == "prod"  # type: ignore[index]
    assert _marker(target.url, "public") is None
    refused = _bare(site, "rollback")
    assert refused.returncode == 8, refused.stderr
    assert "was deployed as prod" in refused.stderr.strip().splitlines()[-1]
    no_backup = _bare(site, "rollback", "--yes", "--no-backup")
    assert no_backup.returncode == 2, no_backup.stderr
    assert "--no-backup is refused" in no_backup.stderr
    assert _tables(target.url, "tenant") == {"users", "posts"}
    assert _dumps(site.backups / "dev") == []
    done = _bare(site, "rollback", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert [u["name"] for u in found["rolled_back"]] == ["2_posts"]
    taken = Path(found["backup"]["path"])
    assert taken.is_file() and taken.parent == site.backups / "dev"
    assert any(str(taken) in line and "restore" in line for line in found["runbook"])
    assert _tables(target.url, "tenant") == {"users"}


def test_a_protected_rollback_backs_up_and_marks(site: Site) -> None:
    """rollback --env prod --yes takes a verified backup first and marks the database."""
    write(site.migrations, "1_users", *USERS)
    _ok(site.migrate("staging"))
    assert _marker(site.url) is None  # staging is not protected: nothing remembered
    done = site.run("rollback", "--env", "prod", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert Path(found["backup"]["path"]).parent == site.backups / "prod"
    assert _marker(site.url)["command"] == "rollback"  # type: ignore[index]
    assert _tables(site.url) == set()


def test_a_restore_keeps_the_marker_and_a_protected_one_marks(site: Site) -> None:
    """A backup taken before the database was marked, restored: the marker stays; forgotten
    (the README's one line), a restore under prod marks the database again."""
    write(site.migrations, "1_users", *USERS)
    _ok(site.migrate("staging"))
    backup = site.run("backup", "--env", "prod", "--json")
    assert backup.returncode == 0, backup.stderr
    path = json.loads(backup.stdout)["path"]
    write(site.migrations, "2_posts", *POSTS)
    _ok(site.migrate("prod"))
    restored = site.run("restore", "--env", "prod", "--backup", path, "--yes")
    assert restored.returncode == 0, restored.stderr
    assert _tables(site.url) == {"users"}
    assert _marker(site.url)["command"] == "migrate"  # type: ignore[index]
    execute(site.url, "COMMENT ON TABLE predeploy_runs IS NULL")  # as older versions left it
    assert _marker(site.url) is None
    again = site.run("restore", "--env", "prod", "--backup", path, "--yes")
    assert again.returncode == 0, again.stderr
    assert _marker(site.url)["command"] == "restore"  # type: ignore[index]


def test_check_says_which_database_and_which_policy(site: Site) -> None:
    """check names the server and the policy: relaxed on loopback, protected once marked."""
    first = _bare(site, "check")
    assert first.returncode == 0, first.stderr
    assert "relaxed (env dev is not protected, a local database)" in first.stdout
    write(site.migrations, "1_users", *USERS)
    _ok(site.migrate("prod"))
    again = _bare(site, "check", "--json")
    found = json.loads(again.stdout)
    assert found["protected"] and found["deployed_as"] == "prod"
    assert found["policy"] == "protected (deployed as prod)"


# --- a database on another machine (through this machine's own non-loopback address) ----


def _outside_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: it only picks a route
        address = str(probe.getsockname()[0])
        if not address.startswith("127."):
            return address
    return None


@contextlib.contextmanager
def _forward(listen: str, to: tuple[str, int]) -> Iterator[int]:
    """A TCP forwarder on ``listen`` to the suite's server (it listens on 127.0.0.1 only)."""
    server = socket.create_server((listen, 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(1 << 16):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(to)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_a_database_that_is_not_local_is_not_relaxed(database_url: str, project: Path) -> None:
    """Env dev on a database reached through a non-loopback address: asked about (exit 8
    without a terminal, naming the database, the server and PREDEPLOY_PROTECTED=0); with
    --yes it backs up first; PREDEPLOY_PROTECTED=0 (a scratch database) applies at once."""
    address = _outside_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to reach the server by")
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    with _forward(address, (str(info["host"]), int(str(info["port"])))) as port:
        url = database_url.replace(f"{info['host']}:{info['port']}", f"{address}:{port}")
        site = Site(project, url, {})
        write(site.migrations, "1_users", *USERS)
        check = _bare(site, "check")
        assert check.returncode == 0, check.stderr
        assert f"{address}:{port}" in check.stdout and "asks (env dev on a database" in check.stdout
        refused = _bare(site, "migrate")
        assert refused.returncode == 8, refused.stderr
        line = refused.stderr.strip().splitlines()[-1]
        database = str(info["dbname"])
        assert f"{database} on {address}:{port} is not a local database" in line, line
        assert "PREDEPLOY_PROTECTED=0" in line and "--env prod" in line
        assert str(info["password"]) not in refused.stderr + refused.stdout
        assert _tables(database_url) == set()
        done = _bare(site, "migrate", "--yes", "--json")
        assert done.returncode == 0, done.stderr
        assert Path(report(done)["backup"]["path"]).is_file()
        assert _marker(database_url) is None  # dev does not mark: it is not protected
        write(site.migrations, "2_posts", *POSTS)
        argv = [sys.executable, "-m", "predeploy", "migrate"]
        env = {**_clean(), **site.env}
        code, screen = run_in_terminal(
            argv, cwd=site.project, env=env, prompt=b"Go on? [y/N]", answer="n"
        )
        assert code == 8, screen
        assert f"on {database} on {address}:{port} (dev)" in screen  # the question names both
        assert str(info["password"]) not in screen
        assert _tables(database_url) == {"users"}
        scratch = _bare(site, "migrate", "--json", PREDEPLOY_PROTECTED="0")
        assert scratch.returncode == 0, scratch.stderr
        assert report(scratch)["backup"] is None
        assert _tables(database_url) == {"users", "posts"}


# --- init -------------------------------------------------------------------------------


def test_init_suggests_prod_when_env_points_elsewhere(cli: Cli, project: Path) -> None:
    """init on a server whose .env holds a non-local URL prints PREDEPLOY_ENV=prod, and
    changes nothing in .env; a local URL gets no such line."""
    secret = "s3cr3t-pw"
    text = f"DATABASE_URL=postgresql://app:{secret}@db.example.com:5432/app\n"
    (project / ".env").write_text(text)
    done = cli("init")
    assert done.returncode == 0, done.stderr
    assert "PREDEPLOY_ENV=prod" in done.stdout
    assert "db.example.com:5432" in done.stdout
    assert secret not in done.stdout + done.stderr
    assert (project / ".env").read_text() == text
    (project / ".env").write_text("DATABASE_URL=postgresql://app@localhost:5432/app\n")
    local = cli("init", "--json")
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)["suggestions"] == []
    (project / ".env").write_text(text)
    already = cli("init", env={"PREDEPLOY_ENV": "prod"})
    assert already.returncode == 0, already.stderr
    assert "PREDEPLOY_ENV=prod" not in already.stdout


def _clean() -> dict[str, str]:
    from support.environ import OUR_VARIABLES  # noqa: PLC0415

    return {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES}


def test_a_marker_on_another_audit_table_counts(site: Site) -> None:
    """prod's own PREDEPLOY_AUDIT_TABLE (in .env.prod only) still protects a bare run."""
    write(site.migrations, "1_users", *USERS)
    (site.project / ".env.prod").write_text("PREDEPLOY_AUDIT_TABLE=deploy_runs\n")
    _ok(site.migrate("prod"))
    write(site.migrations, "2_posts", *POSTS)
    refused = _bare(site, "migrate")
    assert refused.returncode == 8, refused.stderr
    assert "was deployed as prod" in refused.stderr.strip().splitlines()[-1]


def test_predeploy_env_in_a_file_is_said_to_be_unread(project: Path) -> None:
    """PREDEPLOY_ENV=prod in .env does not choose the env: every run says so."""
    (project / ".env").write_text("PREDEPLOY_ENV=prod\nDATABASE_URL=postgresql://a@db.internal/x\n")
    warnings = load_settings("dev", project, {}).warnings
    said = [w for w in warnings if "PREDEPLOY_ENV=prod in .env is not read" in w]
    assert said and "--env prod" in said[0], warnings
    assert load_settings("prod", project, {}).warnings == ()


def test_a_marked_backup_restores_into_a_fresh_database(
    site: Site, target: Target, project: Path
) -> None:
    """A dump of a database deployed as prod (its audit table's marker inside) restores into a
    fresh database under dev: the marker is not replayed (the audit table is kept out of a
    restore, its comment too), so the scratch copy is not protected."""
    write(site.migrations, "1_users", *USERS)
    _ok(site.migrate("prod"))
    backup = site.run("backup", "--env", "dev", "--json")
    assert backup.returncode == 0, backup.stderr
    path = json.loads(backup.stdout)["path"]
    copy = f"{site.url.rsplit('/', 1)[1]}_copy"
    execute(target.server.admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(copy)))
    try:
        url = target.server.url(copy)
        restored = site.run(
            "restore", "--backup", path, "--other-database", "--yes", DATABASE_URL=url
        )
        assert restored.returncode == 0, restored.stderr
        assert _tables(url) == {"users"}
        assert _marker(url) is None
    finally:
        execute(
            target.server.admin_url,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(copy)),
        )


def test_a_database_an_older_predeploy_deployed_is_known_by_its_audit_rows(site: Site) -> None:
    """No marker (a predeploy that did not mark), but audit rows of prod runs that changed it:
    a bare migrate is still refused naming prod; the README's one line forgets it all."""
    write(site.migrations, "1_users", *USERS)
    _ok(site.migrate("prod"))
    execute(site.url, "COMMENT ON TABLE predeploy_runs IS NULL")
    write(site.migrations, "2_posts", *POSTS)
    refused = _bare(site, "migrate")
    assert refused.returncode == 8, refused.stderr
    assert "was deployed as prod" in refused.stderr.strip().splitlines()[-1]
    execute(site.url, "COMMENT ON TABLE predeploy_runs IS 'predeploy scratch'")
    relaxed = _bare(site, "migrate", "--json")
    assert relaxed.returncode == 0, relaxed.stderr
    assert report(relaxed)["backup"] is None
    assert _tables(site.url) == {"users", "posts"}
