"""Rollback undoes exactly the migrations named, newest applied first, or nothing at all.

The runbook names the migrations a run applied; pasted as printed,
it undoes those and keeps everything else (the application's writes included). An
out-of-order merge is undone by what was applied last, not by name; a migration whose
folder was edited or deleted is refused, never skipped for an older one.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from support.receivers import Receiver
from support.servers import Target
from support.wayback import HISTORY, Site, execute, state, write
from support.wayback import commands as runbook_commands

suite_only = pytest.mark.parametrize("target", ["suite"], indirect=True)

USERS = ("CREATE TABLE users (id int PRIMARY KEY, name text);", "DROP TABLE users;")
TAGS = ("CREATE TABLE tags (id int PRIMARY KEY, label text);", "DROP TABLE tags;")
POSTS = (
    "CREATE TABLE posts (id int PRIMARY KEY, user_id int REFERENCES users);",
    "DROP TABLE posts;",
)
AVATAR = ("ALTER TABLE users ADD COLUMN avatar text;", "ALTER TABLE users DROP COLUMN avatar;")


@pytest.fixture
def site(target: Target, project: Path) -> Site:
    """A project on the target server, nothing applied yet."""
    return Site(project, target.url, target.env)


def applied(site: Site) -> list[str]:
    """The applied migrations, in the order they were applied."""
    with psycopg.connect(site.url) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT migration_name FROM {} WHERE finished_at IS NOT NULL"
                " AND rolled_back_at IS NULL ORDER BY finished_at"
            ).format(sql.Identifier(HISTORY))
        ).fetchall()
    return [name for (name,) in rows]


def test_the_pasted_runbook_undoes_exactly_this_run(site: Site) -> None:
    """Run 2's rollback, pasted: run 1's migrations and every row the app wrote stay."""
    write(site.migrations, "1_users", *USERS)
    assert site.migrate()["exit_code"] == 0
    execute(site.url, "INSERT INTO users VALUES (1, 'ada')")
    before = state(site.url, without=(HISTORY,))
    write(site.migrations, "2_posts", *POSTS)
    write(site.migrations, "3_avatar", *AVATAR)
    run = site.migrate()
    assert run["exit_code"] == 0, run["stderr"]
    execute(site.url, "INSERT INTO users VALUES (2, 'bob', 'bob.png')")  # the app writes on
    line = runbook_commands(run["runbook"])[0]
    assert line == "predeploy rollback --env staging --migrations 3_avatar,2_posts --yes"
    pasted = site.paste(line)
    assert pasted.returncode == 0, pasted.stderr
    assert pasted.stdout.split() == ["rolled", "back", "3_avatar", "rolled", "back", "2_posts"]
    after = state(site.url, without=(HISTORY,))
    assert after["schema"] == before["schema"]
    with psycopg.connect(site.url) as conn:
        assert conn.execute("SELECT id, name FROM users ORDER BY id").fetchall() == [
            (1, "ada"),
            (2, "bob"),
        ]
    assert applied(site) == ["1_users"]
    again = site.migrate()  # undone, they are pending again and apply again
    assert [a["name"] for a in again["applied"]] == ["2_posts", "3_avatar"]


@suite_only
def test_an_out_of_order_merge_is_undone_by_what_was_applied_last(site: Site) -> None:
    """2_tags applied after 3_posts: the runbook and --steps 1 undo 2_tags, not 3_posts."""
    write(site.migrations, "1_users", *USERS)
    write(site.migrations, "3_posts", *POSTS)
    assert site.migrate()["exit_code"] == 0
    before = state(site.url, without=(HISTORY,))
    write(site.migrations, "2_tags", *TAGS)  # merged late, named before the newest
    run = site.migrate()
    assert [a["name"] for a in run["applied"]] == ["2_tags"]
    line = runbook_commands(run["runbook"])[0]
    assert line == "predeploy rollback --env staging --migrations 2_tags --yes"
    dry = site.run("rollback", "--env", "staging", "--steps", "1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would undo 2_tags" in dry.stdout and "3_posts" not in dry.stdout
    pasted = site.paste(line)
    assert pasted.returncode == 0, pasted.stderr
    assert state(site.url, without=(HISTORY,)) == before
    assert applied(site) == ["1_users", "3_posts"]


@suite_only
@pytest.mark.parametrize("change", ["edited", "deleted"])
def test_newest_applied_edited_or_deleted_is_refused_and_nothing_undone(
    site: Site, change: str
) -> None:
    """The newest applied migration's folder edited or deleted: exit 5, nothing undone."""
    write(site.migrations, "1_users", *USERS)
    write(site.migrations, "2_tags", *TAGS)
    assert site.migrate()["exit_code"] == 0
    if change == "edited":
        write(site.migrations, "2_tags", "CREATE TABLE tags (id bigint PRIMARY KEY);", TAGS[1])
    else:
        shutil.rmtree(site.migrations / "2_tags")
    before = state(site.url)
    for how in (("--steps", "1"), ("--migrations", "2_tags")):
        refused = site.run("rollback", "--env", "staging", *how, "--yes")
        assert refused.returncode == 5, refused.stderr
        message = refused.stderr.strip().splitlines()[-1]
        assert "2_tags" in message and "nothing was undone" in message
        assert ("changed since" if change == "edited" else "missing on disk") in message
        assert state(site.url) == before
    assert applied(site) == ["1_users", "2_tags"]


@suite_only
def test_naming_one_with_a_later_one_applied_on_top_is_refused(site: Site) -> None:
    """--migrations 1_users while 2_posts (applied after it) is not named: exit 5, nothing."""
    write(site.migrations, "1_users", *USERS)
    write(site.migrations, "2_posts", *POSTS)
    assert site.migrate()["exit_code"] == 0
    before = state(site.url)
    refused = site.run("rollback", "--env", "staging", "--migrations", "1_users", "--yes")
    assert refused.returncode == 5, refused.stderr
    message = refused.stderr.strip().splitlines()[-1]
    assert "2_posts applied after 1_users" in message and "nothing was undone" in message
    assert state(site.url) == before


@suite_only
def test_an_empty_or_doubled_choice_is_a_usage_error_and_nothing_is_undone(site: Site) -> None:
    """--migrations "" (not "the last one") and --migrations with --steps: exit 2, nothing."""
    write(site.migrations, "1_users", *USERS)
    assert site.migrate()["exit_code"] == 0
    before = state(site.url)
    for choice in (["--migrations", ""], ["--migrations", "1_users", "--steps", "1"]):
        refused = site.run("rollback", "--env", "staging", *choice, "--yes")
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip().splitlines()[-1].startswith("predeploy: ")
    assert state(site.url) == before


def test_rollback_and_resolve_report_with_json(site: Site) -> None:
    """`rollback --json` (dry run and real) and `resolve --json`: one JSON object on stdout
    saying what was (or would be) undone and marked, as every reporting command does."""
    write(site.migrations, "1_users", *USERS)
    assert site.migrate()["exit_code"] == 0
    dry = site.run("rollback", "--env", "staging", "--steps", "1", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    would = json.loads(dry.stdout)
    assert would["dry_run"] and [u["name"] for u in would["would_undo"]] == ["1_users"]
    assert would["would_undo"][0]["sql"].strip() == USERS[1].strip() and not would["rolled_back"]
    done = site.run("rollback", "--env", "staging", "--steps", "1", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert [u["name"] for u in json.loads(done.stdout)["rolled_back"]] == ["1_users"]
    marked = site.run("resolve", "--env", "staging", "--applied", "1_users", "--json")
    assert marked.returncode == 0, marked.stderr
    assert json.loads(marked.stdout) == {"migration": "1_users", "marked": "applied"}


@suite_only
def test_a_concurrently_built_index_is_rolled_back_as_the_runbook_says(site: Site) -> None:
    """CREATE INDEX CONCURRENTLY with DROP INDEX CONCURRENTLY as its down: the pasted
    rollback runs it outside a transaction and the migration is pending again."""
    write(site.migrations, "1_users", *USERS)
    assert site.migrate()["exit_code"] == 0
    before = state(site.url, without=(HISTORY,))
    write(
        site.migrations,
        "2_index",
        "CREATE INDEX CONCURRENTLY users_name ON users (name);",
        "DROP INDEX CONCURRENTLY users_name;",
    )
    run = site.migrate()
    assert run["exit_code"] == 0, run["stderr"]
    line = runbook_commands(run["runbook"])[0]
    assert line == "predeploy rollback --env staging --migrations 2_index --yes"
    pasted = site.paste(line)
    assert pasted.returncode == 0, pasted.stderr
    assert state(site.url, without=(HISTORY,)) == before
    assert applied(site) == ["1_users"]


def _trail(site: Site) -> list[tuple[str, str]]:
    with psycopg.connect(site.url) as conn:
        rows = conn.execute("SELECT command, outcome FROM predeploy_runs ORDER BY id")
        return [(str(c), str(o)) for c, o in rows.fetchall()]


@suite_only
def test_a_refused_rollback_leaves_an_audit_row_naming_what_refused(site: Site) -> None:
    """A rollback that reached the database and was refused (no terminal to ask on; prod's
    --no-backup) leaves its row, as a refused migrate does; a dry run leaves none."""
    write(site.migrations, "1_users", *USERS)
    assert site.migrate()["exit_code"] == 0
    dry = site.run("rollback", "--env", "staging", "--steps", "1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    bare = site.run("rollback", "--env", "staging", "--steps", "1")
    assert bare.returncode == 8, bare.stderr
    unsafe = site.run("rollback", "--env", "prod", "--steps", "1", "--yes", "--no-backup")
    assert unsafe.returncode == 2, unsafe.stderr
    assert applied(site) == ["1_users"]
    assert _trail(site) == [
        ("migrate", "applied"),
        ("rollback", "refused: confirmation (no terminal)"),
        ("rollback", "refused: --no-backup"),
    ]


BAD_DOWN = ("CREATE TABLE z (id int);", "DROP TABLE z;\nDROP TABLE no_such_table;")
RETIRE = (
    "-- predeploy: post-deploy\nALTER TABLE users ADD COLUMN retired_at timestamp;",
    "ALTER TABLE users DROP COLUMN retired_at;",
)


def _kept_runbook(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The runbook a run printed, read from the file the print names (it must exist)."""
    (named,) = [line for line in done.stdout.splitlines() if line.startswith("runbook (also in ")]
    path = Path(named.removeprefix("runbook (also in ").removesuffix("):"))
    kept = path.read_text().splitlines()
    assert kept == done.stdout.splitlines()[-len(kept) :]  # printed whole, as kept
    return kept


def _pasted_with_yes(site: Site, line: str) -> subprocess.CompletedProcess[str]:
    """A runbook's migrate line as an operator answers its question (no terminal: --yes)."""
    assert shlex.split(line)[0] == "predeploy", line
    return site.run(*shlex.split(line)[1:], "--yes")


@pytest.mark.usefixtures("apprise_loaded")
def test_a_rollback_that_fails_part_way_prints_and_keeps_the_way_back(
    site: Site, receiver: Receiver
) -> None:
    """--steps 2 where the older down.sql fails: exit 5, and the runbook (printed and kept)
    names what was undone, how to apply it again, that the failed down.sql ran in a rolled
    back transaction, and the pre-rollback backup; the notification says rolled back."""
    write(site.migrations, "1_z", *BAD_DOWN)
    write(site.migrations, "2_tags", *TAGS)
    assert site.migrate("prod")["exit_code"] == 0
    notify = {"PREDEPLOY_NOTIFY_URLS": receiver.url(), "PREDEPLOY_NOTIFY_TIMEOUT": "2s"}
    done = site.run("rollback", "--env", "prod", "--steps", "2", "--yes", **notify)
    assert done.returncode == 5, done.stderr
    assert "(already undone in this run: 2_tags)" in done.stderr.strip().splitlines()[-1]
    assert applied(site) == ["1_z"]
    kept = _kept_runbook(done)
    assert kept[0] == "# this run undid 1 migration(s), newest first: 2_tags"
    assert any("rollback of 1_z failed" in line and "transaction" in line for line in kept)
    assert any("none of it ran and 1_z is still applied" in line for line in kept)
    lines = runbook_commands(kept)
    assert lines[0] == "predeploy migrate --env prod"
    (backup,) = (site.backups / "prod").glob("*pre-rollback.dump")
    assert lines[1] == f"predeploy restore --env prod --backup {backup} --yes"
    (payload,) = receiver.payloads()
    assert "rolled back 1:\n  2_tags" in payload["message"]
    assert "applied 1" not in payload["message"]
    assert "predeploy migrate --env prod" in payload["message"]
    again = _pasted_with_yes(site, lines[0])
    assert again.returncode == 0, again.stderr
    assert applied(site) == ["1_z", "2_tags"]

    alone = site.run("rollback", "--env", "prod", "--steps", "2", "--yes", "--json")
    assert alone.returncode == 5, alone.stderr
    report = json.loads(alone.stdout)
    assert report["exit_code"] == 5 and [u["name"] for u in report["rolled_back"]] == ["2_tags"]


@suite_only
def test_a_single_failing_rollback_says_it_changed_nothing_and_what_ran(site: Site) -> None:
    """--steps 1 whose down.sql fails in a transaction: the runbook says nothing changed and
    keeps the backup; outside a transaction (DROP INDEX CONCURRENTLY), the statement that ran
    is named, with the restore as the last resort."""
    write(site.migrations, "1_z", *BAD_DOWN)
    assert site.migrate("prod")["exit_code"] == 0
    done = site.run("rollback", "--env", "prod", "--steps", "1", "--yes")
    assert done.returncode == 5, done.stderr
    kept = _kept_runbook(done)
    assert kept[0] == "# this run changed nothing in the database: there is nothing to undo"
    assert any("none of it ran and 1_z is still applied" in line for line in kept)
    assert not runbook_commands(kept)
    write(
        site.migrations,
        "2_index",
        "CREATE INDEX CONCURRENTLY z_id ON z (id);",
        "DROP INDEX CONCURRENTLY z_id;\nDROP TABLE no_such_table;",
    )
    assert site.migrate("prod")["exit_code"] == 0
    part = site.run("rollback", "--env", "prod", "--steps", "1", "--yes")
    assert part.returncode == 5, part.stderr
    kept = _kept_runbook(part)
    assert any(line.startswith("#   DROP INDEX CONCURRENTLY z_id") for line in kept), kept
    assert any("2_index is still recorded as applied" in line for line in kept)
    assert runbook_commands(kept)[0].startswith("predeploy restore --env prod --backup ")


@suite_only
def test_rolling_back_a_post_deploy_migration_reapplies_it_with_post_deploy(site: Site) -> None:
    """The runbook of a rollback that undid a post-deploy migration says `migrate
    --post-deploy` (a bare migrate has no pre-deploy migration pending); both phases
    undone: both lines, pre-deploy first, and pasted in that order they apply both again."""
    write(site.migrations, "1_users", *USERS)
    write(site.migrations, "2_retire", *RETIRE)
    assert site.migrate("prod")["exit_code"] == 0
    assert site.migrate("prod", "--post-deploy")["exit_code"] == 0
    one = site.run("rollback", "--env", "prod", "--steps", "1", "--yes", "--json")
    assert one.returncode == 0, one.stderr
    lines = runbook_commands(json.loads(one.stdout)["runbook"])
    assert lines[0] == "predeploy migrate --env prod --post-deploy"
    again = _pasted_with_yes(site, lines[0])
    assert again.returncode == 0, again.stderr
    assert applied(site) == ["1_users", "2_retire"]
    both = site.run("rollback", "--env", "prod", "--steps", "2", "--yes", "--json")
    assert both.returncode == 0, both.stderr
    lines = runbook_commands(json.loads(both.stdout)["runbook"])
    assert lines[:2] == [
        "predeploy migrate --env prod",
        "predeploy migrate --env prod --post-deploy",
    ]
    for line in lines[:2]:
        pasted = _pasted_with_yes(site, line)
        assert pasted.returncode == 0, pasted.stderr
    assert applied(site) == ["1_users", "2_retire"]
