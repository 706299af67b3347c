"""The invoke tasks: each parses its flags, calls one command and renders its result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import Task, task

from predeploy._util.log import current_run_id
from predeploy.cli import output, render, runs, verbs
from predeploy.cli import render_run as shown
from predeploy.cli.progress import progress, step_lines
from predeploy.cli.runner import R, run
from predeploy.config.settings import Settings

__all__ = ["ns"]

_ENV_HELP = "environment: dev, staging, prod or any .env.<name> (default: PREDEPLOY_ENV, else dev)"
_JSON_HELP = "print one JSON object on stdout (and JSON log lines on stderr off a terminal)"
_BASIC = {"env": _ENV_HELP, "json": _JSON_HELP}


def _verbose() -> bool:  # -v: every migration, every finding
    return output.current().verbosity > 0


def _reading(name: str, command: Callable[[Settings], R], show: Callable[[R], str], doc: str,
             *, env: str = "") -> Task[Any]:  # fmt: skip
    """A task that only runs ``command`` and renders it with ``show``: --json, and --env
    unless ``env`` names the one env it runs in (dev: the embedded server's commands, init)."""

    def with_env(c: Context, env: str | None = None, json_: bool = False) -> None:
        run(env, json_, command, show)

    def in_dev(c: Context, json_: bool = False) -> None:
        run(env, json_, command, show)

    body = in_dev if env else with_env
    body.__doc__ = doc
    made: Task[Any] = task(name=name, help={"json": _JSON_HELP} if env else _BASIC)(body)
    return made


# the lambdas defer each command's import to the task's run (predeploy.cli.verbs)
# fmt: off
check = _reading("check", lambda s: verbs.check.check(s), render.render_check,  # noqa: PLW0108
    "Connect and report server version, database, user, latency, standby and pg_dump.")
health = _reading("health", lambda s: verbs.health.run(s), render.render_health,  # noqa: PLW0108
    "Check the database, the migration history, the app's URL and its pm2 processes.")
notify_test = _reading("notify-test", lambda s: verbs.notify_test.notify_test(s),  # noqa: PLW0108
    render.render_sent,
    "Send a test message to every PREDEPLOY_NOTIFY_URLS address and report each result.")
init = _reading("init", lambda s: verbs.init.init(s), render.render_adopted,  # noqa: PLW0108
    env="dev", doc="""\
Adopt predeploy in this app repository (adds lines only; prints the pm2 and cron lines).

Adds predeploy's settings (commented out) to .env.example and its folders to
.gitignore; changes nothing that exists.
""")
# fmt: on


@task(help={
    **_BASIC,
    "check": "exit 1 unless everything is applied and nothing is failed, edited or missing",
    "drift": "also compare the live schema with the applied migrations (see drift)",
    "all": "a line per migration even for a long history (more than 20: a summary)",
})  # fmt: skip
def status(c: Context, env: str | None = None, json_: bool = False, check: bool = False,
           drift: bool = False, all_: bool = False) -> None:  # fmt: skip
    """Show applied, pending, failed, edited and missing migrations, and the last runs."""
    options = verbs.status.StatusOptions(check=check, drift=drift)
    run(env, json_, lambda s: verbs.status.status(s, options),
        lambda r: render.render_status_report(r, whole=all_))  # fmt: skip


@task(help={
    **_BASIC,
    "yes": "confirm in advance (logged with your user name); needed without a terminal",
    "dry_run": "show the plan and the SQL that would run; change nothing, no backup",
    "rehearse": "run the pending migrations in a transaction that is rolled back",
    "no_backup": (
        "skip the pre-migrate backup (refused in prod unless PREDEPLOY_ALLOW_NO_BACKUP=1)"
    ),
    "force_lint": "apply in prod despite lint errors (logged with your user name)",
    "allow_drift": "apply in a protected env despite drift, with --yes (logged)",
    "post_deploy": "apply the pending post-deploy migrations (after the release is live)",
})  # fmt: skip
def migrate(c: Context, env: str | None = None, json_: bool = False, yes: bool = False,
            dry_run: bool = False, rehearse: bool = False, no_backup: bool = False,
            force_lint: bool = False, allow_drift: bool = False,
            post_deploy: bool = False) -> None:  # fmt: skip
    """Check, lint, back up, confirm, apply safely, check again, print the rollback runbook."""
    options = runs.migrate_options(
        json_, yes=yes, dry_run=dry_run, rehearse=rehearse, no_backup=no_backup,
        force_lint=force_lint, allow_drift=allow_drift, post_deploy=post_deploy,
    )  # fmt: skip
    run(env, json_, lambda s: verbs.migrate.migrate(s, options, current_run_id(),
                                                     step_lines(json_)),
        lambda r: shown.render_report(r, dry_run=dry_run, verbose=_verbose()))  # fmt: skip


@task(help={**_BASIC, "all": "lint every migration, not only the pending ones"})
def lint(c: Context, env: str | None = None, all_: bool = False, json_: bool = False) -> None:
    """Lint the pending migrations with squawk, sized by the live tables; exit 1 on errors."""
    run(env, json_, lambda s: verbs.lint.lint(s, every=all_), render.render_linted)


@task(help={
    **_BASIC,
    "yes": "confirm the migration in advance (logged with your user name); for hooks",
    "restart": "pm2 restart instead of pm2 reload",
    "dry_run": "show what migrate would do; no reload",
    "force_lint": "migrate in prod despite lint errors (logged with your user name)",
    "allow_drift": "migrate in a protected env despite drift, with --yes (logged)",
})  # fmt: skip
def deploy(c: Context, env: str | None = None, json_: bool = False, yes: bool = False,
           restart: bool = False, dry_run: bool = False, force_lint: bool = False,
           allow_drift: bool = False) -> None:  # fmt: skip
    """Migrate, then pm2 reload PREDEPLOY_PM2_APP, then wait until it is healthy."""
    options = runs.migrate_options(
        json_, yes=yes, dry_run=dry_run, force_lint=force_lint, allow_drift=allow_drift
    )
    run(env, json_, *runs.deploying(options, restart=restart, json_output=json_,
                                    verbose=_verbose()))  # fmt: skip


@task(help=_BASIC)
def maintenance(c: Context, env: str | None = None, json_: bool = False) -> None:
    """For cron: backup (reason cron) with retention, optional VACUUM (ANALYZE), health report.

    Exits 0 when all is well, 1 when something needs a human, 6 when another
    maintenance run holds the lock, or the failed step's code (4 backup).
    """
    run(env, json_, lambda s: verbs.maintenance.maintain(
            s, progress=progress(json_), on_step=step_lines(json_)),
        shown.render_maintenance)  # fmt: skip


@task(help={
    "env": _ENV_HELP,
    "migrations": "the migrations to undo, comma-separated (as the runbook names them)",
    "steps": "undo the N most recently applied migrations instead (default 1)",
    "yes": "confirm in advance (logged with your user name)",
    "dry_run": "show what would be undone and the SQL; change nothing",
    "no_backup": "no verified backup first where one is taken (protected: needs "
    "PREDEPLOY_ALLOW_NO_BACKUP=1)",
    "json": _JSON_HELP,
})  # fmt: skip
def rollback(c: Context, env: str | None = None, migrations: str | None = None,
             steps: str | None = None, yes: bool = False, dry_run: bool = False,
             no_backup: bool = False, json_: bool = False) -> None:  # fmt: skip
    """Run the down.sql of the named (or last N applied) migrations, newest applied first."""
    run(env, json_, lambda s: runs.rollback(s, migrations, steps, yes=yes, dry_run=dry_run,
        no_backup=no_backup, json_output=json_), shown.render_rolled_back)  # fmt: skip


@task(help={
    "env": _ENV_HELP,
    "applied": "mark migration NAME as applied (you completed it by hand)",
    "rolled_back": "mark failed migration NAME as rolled back (so migrate runs it again)",
    "json": _JSON_HELP,
})  # fmt: skip
def resolve(c: Context, env: str | None = None, applied: str | None = None,
            rolled_back: str | None = None, json_: bool = False) -> None:  # fmt: skip
    """Mark a failed or hand-applied migration, with Prisma's semantics."""
    run(env, json_, lambda s: verbs.resolve.resolve(s, applied=applied, rolled_back=rolled_back),
        render.render_resolved)  # fmt: skip


@task(help={
    "name": "what the migration does, in snake_case (add_user_avatar)",
    **_BASIC,
    "post_deploy": "mark it post-deploy: it runs after the new release is live",
})  # fmt: skip
def new(c: Context, name: str, env: str | None = None, json_: bool = False,
        post_deploy: bool = False) -> None:  # fmt: skip
    """Create <migrations>/<UTC timestamp>_<name>/ with migration.sql and down.sql."""
    run(env, json_, lambda s: verbs.new.new(s, name, post_deploy=post_deploy),
        render.render_created)  # fmt: skip


@task(name="backup", help={**_BASIC,
    "reason": "why: manual (default), pre-migrate, cron, ... (part of the file name)"})  # fmt: skip
def backup_task(c: Context, env: str | None = None, reason: str = "manual",
                json_: bool = False) -> None:  # fmt: skip
    """Dump the database with pg_dump, verify the dump, keep it with a manifest."""
    run(env, json_, lambda s: verbs.backup.backup(s, reason=reason, progress=progress(json_)),
        render.render_backed_up)  # fmt: skip


@task(help={**_BASIC, "check": (
    "recompute every backup's sha256 (and record when); exit 1 if one differs")})  # fmt: skip
def backups(c: Context, env: str | None = None, json_: bool = False, check: bool = False) -> None:
    """List the env's backups: time, reason, size, migration state, checksum checks."""
    run(env, json_, lambda s: verbs.backups.backups(s, check=check), render.render_listed)


@task(name="restore", help={
    "env": _ENV_HELP,
    "backup": "the dump to restore (default: the env's newest backup, if undamaged)",
    "yes": "do not ask to type the database name (for scripts)",
    "other_database": "restore a backup whose manifest names another database, env or server",
    "json": _JSON_HELP,
})  # fmt: skip
def restore_task(c: Context, env: str | None = None, backup: str | None = None, yes: bool = False,
                 other_database: bool = False, json_: bool = False) -> None:  # fmt: skip
    """Restore a backup over the env's database, atomically, after a typed confirmation."""
    run(env, json_, lambda s: runs.restore(s, backup, yes=yes, other_database=other_database,
        json_output=json_), shown.render_restored)  # fmt: skip


@task(help={
    **_BASIC,
    "save": "write the expected schema's fingerprint to FILE (e.g. in CI, for --expected)",
    "expected": "compare with the fingerprint in FILE instead of building a shadow",
    "revert_sql": "print the SQL that would bring live back to the migrations' schema",
    "adopt_sql": "print a migration that would make the history match live",
})  # fmt: skip
def drift(c: Context, env: str | None = None, json_: bool = False, save: str | None = None,
          expected: str | None = None, revert_sql: bool = False,
          adopt_sql: bool = False) -> None:  # fmt: skip
    """Compare the live schema with what the applied migrations build; exit 1 on drift."""
    options = verbs.drift.DriftOptions(
        save=Path(save) if save else None, expected=Path(expected) if expected else None,
        revert_sql=revert_sql, adopt_sql=adopt_sql,
    )  # fmt: skip
    run(env, json_, lambda s: verbs.drift.drift(s, options), render.render_drift)


db_up = _reading("up", lambda s: verbs.db.up(s), render.render_server, env="dev",  # noqa: PLW0108
    doc="Start (or reuse) the embedded dev PostgreSQL under .pgdata/.")  # fmt: skip
db_down = _reading("down", lambda s: verbs.db.down(s), render.render_stopped, env="dev",  # noqa: PLW0108
    doc="Stop the embedded dev PostgreSQL under .pgdata/ (its data stays).")  # fmt: skip


@task(name="url")
def db_url(c: Context) -> None:
    """Print the embedded dev database's URL (starting the server if needed)."""
    run("dev", False, verbs.db.up, lambda r: str(r.server.url))


db = Collection("db", db_up, db_down, db_url)
ns = Collection(check, status, migrate, rollback, resolve, new, backup_task, backups, restore_task,
                lint, health, deploy, maintenance, drift, notify_test, init, db)  # fmt: skip
