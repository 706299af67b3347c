"""Runbooks say what a run changed and only that; rehearse and the plan's gates agree.

After a failure that changed nothing (a declined confirmation, a
busy lock, a lock timeout, a blocker wait, a rolled-back error) the runbook says so and
never suggests a restore; after a part-way failure it names what was applied and how to
undo just that. Rehearse sits behind prod's confirmation, exits 5 on a failure with each
result listed, and ends within its bound behind a lock holder. A migration missing on disk
is a warning before and after applying, so the run (and a deploy) goes on.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import psycopg
import pytest

from predeploy.commands import deploy_runbook, migrate_report
from predeploy.commands.deploy import DeployReport
from predeploy.commands.steps import Step
from predeploy.config.settings import load_settings
from predeploy.errors import HealthCheckFailed, Interrupted, MigrationError, PredeployError
from predeploy.migrate.outcome import Applied
from support import migrating
from support.terminal import run_in_terminal
from support.wayback import HISTORY, Site, state, write
from support.wayback import commands as runbook_commands

NOTHING = "# this run changed nothing in the database: there is nothing to undo"
USERS = ("CREATE TABLE users (id int PRIMARY KEY, name text);", "DROP TABLE users;")
AVATAR = ("ALTER TABLE users ADD COLUMN avatar text;", "ALTER TABLE users DROP COLUMN avatar;")
BROKEN = "ALTER TABLE nope ADD COLUMN x int;"


@pytest.fixture
def site(project: Path, database_url: str) -> Site:
    """A project with 1_users applied and a row in it."""
    here = Site(project, database_url, {})
    write(here.migrations, "1_users", *USERS)
    migrating.migrate(here.settings())
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO users VALUES (1, 'ada')")
    return here


def assert_changed_nothing(runbook: list[str]) -> None:
    """The runbook of a run that changed nothing: it says so, and suggests no restore."""
    assert runbook[0] == NOTHING, runbook
    assert not any("predeploy restore" in line for line in runbook), runbook
    assert not any("rollback" in line for line in runbook), runbook


def holding(url: str, sql: str = "SELECT count(*) FROM users") -> psycopg.Connection:
    """A session of 'the-app' that ran ``sql`` and sits idle in its transaction."""
    conn = psycopg.connect(url, application_name="the-app")
    conn.execute(sql)
    return conn


def test_declined_confirmation_changed_nothing(site: Site) -> None:
    """'n' at staging's question: exit 8; the runbook (and the screen) suggest no restore."""
    write(site.migrations, "2_avatar", *AVATAR)
    before = state(site.url)
    code, screen = run_in_terminal(
        [sys.executable, "-m", "predeploy", "migrate", "--env", "staging"],
        cwd=site.project,
        env={**os.environ, **site.env},
        answer="n",
        prompt=b"[y/N]",
    )
    assert code == 8, screen
    assert "changed nothing" in screen and "predeploy restore" not in screen
    newest = max((site.project / "logs").glob("runbook-staging-*.txt"), key=os.path.getmtime)
    assert_changed_nothing(newest.read_text().splitlines())
    assert state(site.url) == before


def test_busy_migrate_lock_changed_nothing(site: Site) -> None:
    """Another run holds the migrate lock: exit 6, a runbook that says nothing changed."""
    write(site.migrations, "2_avatar", *AVATAR)
    before = state(site.url)
    with psycopg.connect(site.url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(72707369)")
        run = site.migrate("staging", "--post-deploy", PREDEPLOY_LOCK_WAIT="0.3s")
    assert run["exit_code"] == 6, run["stderr"]
    assert_changed_nothing(run["runbook"])
    assert state(site.url) == before
    # run it again as it was asked: migrate's own runbook says migrate, with --yes
    again = runbook_commands(run["runbook"])
    assert again == ["predeploy migrate --env staging --post-deploy --yes"]
    assert site.paste(again[0]).returncode == 0


def test_lock_timeout_changed_nothing(site: Site) -> None:
    """A table held past the lock timeout and its retries: exit 5, nothing changed, no restore."""
    write(site.migrations, "2_avatar", *AVATAR)
    before = state(site.url)
    with holding(site.url):
        run = site.migrate("staging", PREDEPLOY_LOCK_TIMEOUT="200ms", PREDEPLOY_LOCK_RETRIES="1")
    assert run["exit_code"] == 5, run["stderr"]
    assert "application the-app" in run["error"]
    assert_changed_nothing(run["runbook"])
    assert state(site.url) == before


def test_blocker_wait_in_prod_changed_nothing(site: Site) -> None:
    """prod --yes waits for a blocking session, then gives up: exit 5, the backup kept only."""
    write(site.migrations, "2_avatar", *AVATAR)
    before = state(site.url)
    with holding(site.url):
        run = site.migrate("prod", PREDEPLOY_BLOCKER_WAIT="1s")
    assert run["exit_code"] == 5, run["stderr"]
    assert "nothing was applied" in run["error"]
    assert_changed_nothing(run["runbook"])
    assert any(run["backup"]["path"] in line for line in run["runbook"])  # kept, named
    assert state(site.url) == before


def test_rolled_back_error_changed_nothing(site: Site) -> None:
    """The only pending migration fails in its transaction: exit 5, nothing changed."""
    write(site.migrations, "2_broken", BROKEN)
    before = state(site.url)
    run = site.migrate()
    assert run["exit_code"] == 5, run["stderr"]
    assert run["applied"] == []
    assert_changed_nothing(run["runbook"])
    assert state(site.url) == before


def test_part_way_failure_names_what_was_applied_and_undoes_just_that(site: Site) -> None:
    """2 applied, 3 failed: the runbook names 2, its rollback (pasted) undoes only 2."""
    write(site.migrations, "2_avatar", *AVATAR)
    write(site.migrations, "3_broken", BROKEN)
    before = state(site.url, without=(HISTORY,))
    run = site.migrate()
    assert run["exit_code"] == 5, run["stderr"]
    assert "# before it failed, this run applied 1 migration(s): 2_avatar" in run["runbook"]
    lines = runbook_commands(run["runbook"])
    assert lines[0] == "predeploy rollback --env staging --migrations 2_avatar --yes"
    assert lines[1].startswith("predeploy restore --env staging --backup ")  # the last resort
    assert any("discards every write made since" in line for line in run["runbook"])
    pasted = site.paste(lines[0])
    assert pasted.returncode == 0, pasted.stderr
    assert state(site.url, without=(HISTORY,)) == before


def test_part_way_outside_a_transaction_says_how_to_mark_it(site: Site) -> None:
    """A non-transactional migration stopped part-way: the runbook lists the statement
    that ran and was kept (to undo by hand), and its resolve line works."""
    write(
        site.migrations,
        "2_index",
        "CREATE TABLE tags (id int);\nCREATE INDEX CONCURRENTLY nope_x ON nope (x);",
    )
    run = site.migrate()
    assert run["exit_code"] == 5, run["stderr"]
    lines = runbook_commands(run["runbook"])
    assert lines[0] == "predeploy resolve --env staging --rolled-back 2_index"
    assert "#   CREATE TABLE tags (id int)" in run["runbook"]
    assert not any(line.startswith("predeploy rollback") for line in lines)
    pasted = site.paste(lines[0])
    assert pasted.returncode == 0, pasted.stderr
    assert site.run("status", "--env", "staging", "--check").returncode == 1  # pending again


def test_rehearse_in_prod_without_a_terminal_or_yes_is_refused(site: Site) -> None:
    """--rehearse in prod with no terminal and no --yes: exit 8, nothing run, no backup."""
    write(site.migrations, "2_avatar", *AVATAR)
    done = site.run("migrate", "--env", "prod", "--rehearse", "--json")
    assert done.returncode == 8, done.stderr
    assert "no terminal to ask on" in done.stderr
    assert not (site.backups / "prod").exists()


def test_failing_rehearsal_exits_5_listing_each_result(site: Site) -> None:
    """A rehearsed migration fails: exit 5; every pending migration has its outcome."""
    write(site.migrations, "2_avatar", *AVATAR)
    write(site.migrations, "3_broken", BROKEN)
    write(site.migrations, "4_tags", "CREATE TABLE tags (id int);")
    before = state(site.url)
    run = site.migrate("prod", "--rehearse")
    assert run["exit_code"] == 5, run["stderr"]
    assert [(r["name"], r["outcome"]) for r in run["rehearsal"]] == [
        ("2_avatar", "ok"),
        ("3_broken", "failed"),
        ("4_tags", "not rehearsed"),
    ]
    assert "3_broken" in run["error"]
    assert state(site.url) == before


def test_rehearsal_behind_a_lock_holder_ends_within_its_bound(site: Site) -> None:
    """A session holds the table: the rehearsal fails (5) after the lock timeout, naming it."""
    write(site.migrations, "2_avatar", *AVATAR)
    started = time.monotonic()
    with holding(site.url):
        run = site.migrate("prod", "--rehearse", PREDEPLOY_LOCK_TIMEOUT="300ms")
    assert time.monotonic() - started < 10
    assert run["exit_code"] == 5, run["stderr"]
    [result] = run["rehearsal"]
    assert (result["name"], result["outcome"]) == ("2_avatar", "failed")
    assert "application the-app" in result["detail"]


def test_missing_on_disk_and_pending_warns_then_applies(site: Site) -> None:
    """A folder missing on disk and one pending: a warning, the migration applied, exit 0."""
    shutil.rmtree(site.migrations / "1_users")
    write(site.migrations, "2_tags", "CREATE TABLE tags (id int);", "DROP TABLE tags;")
    run = site.migrate("prod")
    assert run["exit_code"] == 0, run["stderr"]
    missing = "1_users is recorded in the database but its folder is missing on disk"
    assert missing in run["warnings"]
    assert [a["name"] for a in run["applied"]] == ["2_tags"]
    checks = {s["name"]: s["outcome"] for s in run["steps"]}
    assert checks["post-apply checks"] == "ok"
    assert "predeploy rollback --env prod --migrations 2_tags --yes" in run["runbook"]


def test_health_counts_a_migration_missing_on_disk_as_a_warning(site: Site) -> None:
    """After such a run, health (what deploy waits for after the reload) passes, and says it."""
    shutil.rmtree(site.migrations / "1_users")
    done = site.run("health", "--env", "staging", "--json")
    assert done.returncode == 0, done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["history"]["ok"] is True
    assert "1_users missing on disk" in checks["history"]["detail"]


def _deploy(
    steps: list[tuple[str, str]],
    *,
    pre: tuple[str, ...] = (),
    post: list[str] | None = None,
    post_error: PredeployError | None = None,
    error: PredeployError | None = None,
) -> DeployReport:
    """A deploy's report: its steps, what each phase applied (each with a down.sql)."""
    report = DeployReport(env="prod", app="web", steps=[Step(n, o, 0.1) for n, o in steps])

    def phase(names: list[str], phase: str) -> migrate_report.Report:
        done = migrate_report.Report(env="prod", phase=phase)
        done.applied = [Applied(n, 0.1, True, 1) for n in names]
        done.pending = [migrate_report.Pending(n, 1, True, True, "ab" * 32, phase) for n in names]
        return done

    report.migrate = phase(list(pre), "pre-deploy")
    if post is not None:
        report.post = phase(post, "post-deploy")
        report.post.error = post_error
    report.error = error or post_error
    return report


SIGTERM_RELOAD = Interrupted("stopped by SIGTERM while deploying (reload)", 143)


@pytest.mark.parametrize(
    ("report", "first", "has", "lacks"),
    [
        pytest.param(
            _deploy([("pm2", "ok"), ("reload", "interrupted")], pre=["1_a"], error=SIGTERM_RELOAD),
            "# pm2 reload web was in flight when this deploy was interrupted: pm2 may have",
            ["true describe web", "true reload web", "predeploy health --env prod"],
            ["not reloaded"],
            id="signal-in-reload",
        ),
        pytest.param(
            _deploy([("pm2", "ok"), ("restart", "failed")], error=HealthCheckFailed("timeout")),
            "# pm2 restart web was in flight when it failed: pm2 may have restarted web",
            [" describe web"],
            ["not restarted", "restore"],
            id="failed-restart",
        ),
        pytest.param(
            _deploy([("pm2", "ok")], error=MigrationError("1_a failed")),
            "# web was not reloaded: pm2 still runs the release it ran before this deploy",
            [],
            ["describe", "restore"],
            id="no-reload",
        ),
        pytest.param(
            _deploy([("pm2", "ok"), ("reload", "ok")], post=[], post_error=MigrationError("x")),
            "# the new release of web is live and healthy; a post-deploy migration failed,",
            ["# the post-deploy phase changed nothing in the database", "--post-deploy"],
            ["restore", "rollback", "pre-deploy migration(s)"],
            id="post-failed-nothing-changed",
        ),
        pytest.param(
            _deploy([("pm2", "ok"), ("reload", "ok")], pre=["1_a", "2_b"], post=["3_c"]),
            "# before the reload, this deploy applied 2 pre-deploy migration(s): 1_a, 2_b",
            ["--migrations 3_c --yes", "true reload web", "--migrations 2_b,1_a --yes"],
            ["not healthy"],
            id="two-phases-ok",
        ),
    ],
)
def test_a_deploys_runbook_says_where_it_stopped(
    project: Path,
    database_url: str,
    report: DeployReport,
    first: str,
    has: list[str],
    lacks: list[str],
) -> None:
    """What the deploy's runbook says follows where it stopped (a table of reports)."""
    values = {"DATABASE_URL": database_url, "PREDEPLOY_PM2_BIN": "/bin/true"}
    settings = load_settings("prod", project, values)
    lines = deploy_runbook.lines(settings, report)
    assert lines[0].startswith(first), lines
    text = "\n".join(lines)
    assert all(part in text for part in has), text
    assert not any(part in text for part in lacks), text
    order = [next(i for i, line in enumerate(lines) if part in line) for part in has]
    assert order == sorted(order), text
