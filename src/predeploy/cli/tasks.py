"""The invoke tasks: thin adapters from the command line to the library.

Each task resolves its env, reads the settings, configures logging, calls one
library function, and prints the result: human text, or JSON with ``--json``
(see predeploy.cli.output). A ``PredeployError`` becomes one line on stderr and
its exit code; nothing else is decided here.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import structlog
from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from predeploy._util import lazy, units
from predeploy._util import log as log_mod
from predeploy._util.operator import operator
from predeploy.cli import boundary, output, prompt, signals
from predeploy.cli.progress import CLEAR, applying, fit
from predeploy.cli.render import (
    render_adopted,
    render_backup,
    render_backups,
    render_check,
    render_deploy,
    render_health,
    render_lint,
    render_maintenance,
    render_report,
    render_restore_plan,
    render_runbook,
    render_runs,
    render_status,
    render_step,
)
from predeploy.commands import confirm
from predeploy.config.policy import Policy
from predeploy.config.settings import Settings, env_name, find_root, load_settings
from predeploy.errors import (
    CheckFailed,
    ConfigError,
    HealthCheckFailed,
    PredeployError,
    Refused,
)
from predeploy.migrate import commands

if TYPE_CHECKING:
    from predeploy.backup import dump as backup_mod
    from predeploy.backup import retention
    from predeploy.commands import check as check_mod
    from predeploy.commands import deploy as deploy_mod
    from predeploy.commands import gates
    from predeploy.commands import health as health_mod
    from predeploy.commands import init as adopt
    from predeploy.commands import maintenance as maintenance_mod
    from predeploy.commands import migrate as workflow
    from predeploy.commands import restore as restore_mod
    from predeploy.commands import rollback as rollback_mod
    from predeploy.commands.runbook import Runbook
    from predeploy.commands.steps import Step
    from predeploy.db import embedded
    from predeploy.db import target as db_target
else:  # each command imports only the machinery it runs (see predeploy._util.lazy)
    gates = lazy.module("predeploy.commands.gates")
    workflow = lazy.module("predeploy.commands.migrate")
    backup_mod = lazy.module("predeploy.backup.dump")
    db_target = lazy.module("predeploy.db.target")
    restore_mod = lazy.module("predeploy.commands.restore")
    retention = lazy.module("predeploy.backup.retention")
    rollback_mod = lazy.module("predeploy.commands.rollback")
    adopt = lazy.module("predeploy.commands.init")
    check_mod = lazy.module("predeploy.commands.check")
    deploy_mod = lazy.module("predeploy.commands.deploy")
    health_mod = lazy.module("predeploy.commands.health")
    maintenance_mod = lazy.module("predeploy.commands.maintenance")
    embedded = lazy.module("predeploy.db.embedded")

__all__ = ["ns"]

T = TypeVar("T")
_ENV_HELP = "environment: dev, staging, prod or any .env.<name> (default: PREDEPLOY_ENV, else dev)"
_JSON_HELP = "print one JSON object on stdout (and JSON log lines on stderr off a terminal)"


def _run(
    env: str | None,
    json_output: bool,
    action: Callable[[Settings], T],
    log_stream: IO[str] | None = None,
) -> T:
    """Settings, logging, then ``action``; every failure becomes one line and an exit code."""
    with signals.handled():
        try:
            settings = load_settings(env_name(env), find_root(Path.cwd()))
        except PredeployError as exc:  # no env yet, so no log file: the message is all there is
            if json_output:
                boundary.report_failure(exc.message, exc.exit_code)
            boundary.fail(exc)
        except KeyboardInterrupt:
            raise Exit("predeploy: interrupted", 130) from None
        setup = log_mod.configure(
            env=settings.env,
            log_dir=settings.log_dir,
            json_output=json_output,
            scrubber=settings.scrubber,
            stream=log_stream,
            colors=output.colors(),
            level=output.log_level(json_output),
        )
        output.set_scrubber(settings.scrubber)  # stdout and the final line mask through it
        log_file = str(setup.log_file) if setup.log_file else None
        for warning in settings.warnings:
            structlog.get_logger("predeploy").warning("configuration_warning", detail=warning)
        return boundary.guarded(lambda: action(settings), log_file, json_output=json_output)


def _emit(data: dict[str, Any], human: str, json_output: bool) -> None:
    output.emit(data, human, json_output)


@task(help={"env": _ENV_HELP, "json": _JSON_HELP})
def check(c: Context, env: str | None = None, json_: bool = False) -> None:
    """Connect and report server version, database, user, latency, standby and pg_dump."""
    result = _run(env, json_, check_mod.check)
    _emit(result.as_dict(), render_check(result), json_)


@task(
    help={
        "env": _ENV_HELP,
        "json": _JSON_HELP,
        "check": "exit 1 unless everything is applied and nothing is failed, edited or missing",
        "drift": "also compare the live schema with the applied migrations (see drift)",
        "all": "a line per migration even for a long history (more than 20: a summary)",
    }
)
def status(
    c: Context,
    env: str | None = None,
    json_: bool = False,
    check: bool = False,
    drift: bool = False,
    all_: bool = False,
) -> None:
    """Show applied, pending, failed, edited and missing migrations, and the last runs."""

    def run(settings: Settings) -> None:
        result, runs = commands.status_and_runs(settings)
        data: dict[str, Any] = {
            "env": settings.env,
            "up_to_date": result.up_to_date,
            "counts": result.counts(),
            "migrations": [e.as_dict() for e in result.entries],
            "last_runs": runs,
        }
        from predeploy.commands.runbook import program  # noqa: PLC0415 (the name a pasted line uses)

        every = f"{program()} status --env {settings.env} --all"
        human = render_status(result, whole=all_, rest=every) + render_runs(runs)
        problems = [
            f"{n} {state}" for state, n in result.counts().items() if n and state != "applied"
        ]
        if drift:
            from predeploy.commands.drift import check as check_drift  # noqa: PLC0415
            from predeploy.drift import render as render_drift  # noqa: PLC0415

            found = check_drift(settings, expected_file=settings.drift_expected)
            data["drift"] = found.as_dict()
            human += "\n\n" + render_drift(found)
            problems += [f"{len(found.differences)} drifted"] if found.drifted else []
        _emit(data, human, json_)
        if check and problems:
            raise CheckFailed("migrations need attention: " + ", ".join(problems))

    _run(env, json_, run)


@task(
    help={
        "env": _ENV_HELP,
        "json": _JSON_HELP,
        "yes": "confirm in advance (logged with your user name); needed without a terminal",
        "dry_run": "show the plan and the SQL that would run; change nothing, no backup",
        "rehearse": "run the pending migrations in a transaction that is rolled back",
        "no_backup": (
            "skip the pre-migrate backup (refused in prod unless PREDEPLOY_ALLOW_NO_BACKUP=1)"
        ),
        "force_lint": "apply in prod despite lint errors (logged with your user name)",
        "allow_drift": "apply in a protected env despite drift, with --yes (logged)",
        "post_deploy": "apply the pending post-deploy migrations (after the release is live)",
    }
)
def migrate(
    c: Context,
    env: str | None = None,
    json_: bool = False,
    yes: bool = False,
    dry_run: bool = False,
    rehearse: bool = False,
    no_backup: bool = False,
    force_lint: bool = False,
    allow_drift: bool = False,
    post_deploy: bool = False,
) -> None:
    """Check, lint, back up, confirm, apply safely, check again, print the rollback runbook."""
    human = not json_
    options = _migrate_options(
        json_,
        yes=yes,
        dry_run=dry_run,
        rehearse=rehearse,
        no_backup=no_backup,
        force_lint=force_lint,
        allow_drift=allow_drift,
        post_deploy=post_deploy,
    )

    def run(settings: Settings) -> workflow.Report:
        return workflow.migrate(settings, options, log_mod.current_run_id(), _step_lines(human))

    report = _run(env, json_, run)
    verbose = output.current().verbosity > 0
    rendered = render_report(report, dry_run=dry_run, verbose=verbose) if human else None
    _finish(report.as_dict(), rendered, report.error, report.runbook)


def _finish(
    data: dict[str, Any],
    rendered: str | None,
    error: PredeployError | None,
    runbook: Runbook | None = None,
) -> None:
    """A run's report (``rendered``, or JSON with --json), then its error's exit code."""
    output.emit(data, rendered or "", rendered is None)
    _runbook_somewhere(runbook, json_output=rendered is None)
    if error is not None:
        boundary.failed(error)


def _runbook_somewhere(runbook: Runbook | None, *, json_output: bool) -> None:
    """A runbook neither its file nor stdout could take (a full disk under both) goes to
    stderr: it is the way back, and must reach the operator somewhere."""
    if runbook is None or runbook.path is not None or not output.stdout_lost():
        return
    if json_output:  # stderr carries JSON lines: the runbook as one more
        structlog.get_logger("predeploy").warning("runbook_on_stderr", commands=runbook.commands)
        return
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(output.mask(render_runbook(runbook).lstrip("\n")) + "\n")
        sys.stderr.flush()


def _migrate_options(json_output: bool, **flags: bool) -> workflow.Options:
    return workflow.Options(
        interactive=prompt.interactive(),
        ask=prompt.ask,
        progress=_progress(json_output),
        applying=applying(json_output),
        **flags,
    )


def _step_lines(human: bool) -> Callable[[Step], None] | None:
    """On a terminal, a checklist line per step as it ends."""
    if not human:
        return None
    return lambda done: print(output.mask(render_step(done)), flush=True)


@task(
    help={
        "env": _ENV_HELP,
        "json": _JSON_HELP,
        "all": "lint every migration, not only the pending ones",
    }
)
def lint(c: Context, env: str | None = None, all_: bool = False, json_: bool = False) -> None:
    """Lint the pending migrations with squawk, sized by the live tables; exit 1 on errors."""
    result = _run(env, json_, lambda s: commands.lint(s, every=all_))
    _emit(result.as_dict(), render_lint(result), json_)
    if result.errors:
        raise Exit(
            f"predeploy: lint found {len(result.errors)} error(s): "
            + ", ".join(sorted({f"{f.migration} {f.rule}" for f in result.errors})),
            CheckFailed.exit_code,
        )


@task(help={"env": _ENV_HELP, "json": _JSON_HELP})
def health(c: Context, env: str | None = None, json_: bool = False) -> None:
    """Check the database, the migration history, the app's URL and its pm2 processes."""
    result = _run(env, json_, health_mod.run)
    _emit(result.as_dict(), render_health(result), json_)
    if not result.ok:
        raise Exit(f"predeploy: unhealthy: {result.summary()}", HealthCheckFailed.exit_code)


@task(
    help={
        "env": _ENV_HELP,
        "json": _JSON_HELP,
        "yes": "confirm the migration in advance (logged with your user name); for hooks",
        "restart": "pm2 restart instead of pm2 reload",
        "dry_run": "show what migrate would do; no reload",
        "force_lint": "migrate in prod despite lint errors (logged with your user name)",
        "allow_drift": "migrate in a protected env despite drift, with --yes (logged)",
    }
)
def deploy(
    c: Context,
    env: str | None = None,
    json_: bool = False,
    yes: bool = False,
    restart: bool = False,
    dry_run: bool = False,
    force_lint: bool = False,
    allow_drift: bool = False,
) -> None:
    """Migrate, then pm2 reload PREDEPLOY_PM2_APP, then wait until it is healthy."""
    human = not json_
    options = _migrate_options(
        json_, yes=yes, dry_run=dry_run, force_lint=force_lint, allow_drift=allow_drift
    )

    def run(settings: Settings) -> deploy_mod.DeployReport:
        return deploy_mod.deploy(
            settings, options, log_mod.current_run_id(), restart=restart, on_step=_step_lines(human)
        )

    report = _run(env, json_, run)
    verbose = output.current().verbosity > 0
    _finish(
        report.as_dict(),
        render_deploy(report, verbose=verbose) if human else None,
        report.error,
        report.runbook or (report.migrate.runbook if report.migrate else None),
    )


@task(help={"env": _ENV_HELP, "json": _JSON_HELP})
def maintenance(c: Context, env: str | None = None, json_: bool = False) -> None:
    """For cron: backup (reason cron) with retention, optional VACUUM (ANALYZE), health report.

    Exits 0 when all is well, 1 when something needs a human, 6 when another
    maintenance run holds the lock, or the failed step's code (4 backup).
    """

    def run(settings: Settings) -> maintenance_mod.MaintenanceReport:
        return maintenance_mod.maintain(
            settings, progress=_progress(json_), on_step=_step_lines(not json_)
        )

    report = _run(env, json_, run)
    output.emit(report.as_dict(), render_maintenance(report), json_)
    if report.exit_code:
        problems = "; ".join(report.needs_attention)
        raise Exit(f"predeploy: maintenance needs attention: {problems}", report.exit_code)


@task(
    help={
        "env": _ENV_HELP,
        "migrations": "the migrations to undo, comma-separated (as the runbook names them)",
        "steps": "undo the N most recently applied migrations instead (default 1)",
        "yes": "confirm in advance (logged with your user name)",
        "dry_run": "show what would be undone and the SQL; change nothing",
        "no_backup": "no verified backup first where one is taken (protected: needs "
        "PREDEPLOY_ALLOW_NO_BACKUP=1)",
        "json": _JSON_HELP,
    }
)
def rollback(
    c: Context,
    env: str | None = None,
    migrations: str | None = None,
    steps: str | None = None,
    yes: bool = False,
    dry_run: bool = False,
    no_backup: bool = False,
    json_: bool = False,
) -> None:
    """Run the down.sql of the named (or last N applied) migrations, newest applied first."""
    asking = _migrate_options(json_, yes=yes)

    def confirm_undo(chosen: list[rollback_mod.Chosen], database: str, policy: Policy) -> None:
        names = ", ".join(c.migration.name for c in chosen)
        gates.refuse_without_terminal(policy, asking, database, "rolling back")
        if yes:
            structlog.get_logger("predeploy").info(
                "confirmation_waived", operator=operator(), action="rollback"
            )
            return
        gates.confirm(
            policy,
            asking,
            database,
            f"About to undo {len(chosen)} migration(s) on {policy.target or database} "
            f"({policy.label}): {names}"
            + ("\nA verified backup is taken first." if policy.protected and not no_backup else ""),
        )

    def run(settings: Settings) -> rollback_mod.Undone:
        if migrations is not None and steps is not None:
            raise ConfigError(
                "give one of --migrations NAMES or --steps N, not both: they choose differently"
            )
        names = None
        if migrations is not None:
            names = [n.strip() for n in migrations.split(",") if n.strip()]
            if not names:
                raise ConfigError(
                    "--migrations is empty: name the migrations to undo, comma-separated "
                    "(see predeploy status), or use --steps N"
                )
        return rollback_mod.rollback(
            settings,
            steps=_count(steps, "--steps"),
            names=names,
            dry_run=dry_run,
            confirm=confirm_undo,
            run_id=log_mod.current_run_id(),
            no_backup=no_backup,
            progress=_progress(json_),
        )

    done = _run(env, json_, run)
    names = set(done.undone_names())
    undone = [
        {"name": i.migration.name, "down": str(i.migration.down_path), "sql": i.down.text}
        for i in done.chosen
        if dry_run or i.migration.name in names
    ]
    human = (
        "\n".join(f"-- would undo {u['name']} with {u['down']}:\n{u['sql']}" for u in undone)
        if dry_run
        else "\n".join(f"rolled back {u['name']}" for u in undone)
    )
    if done.runbook is not None:
        human += "\n" + render_runbook(done.runbook)
    output.emit(
        {
            "dry_run": dry_run,
            "rolled_back": [] if dry_run else undone,
            "would_undo": undone if dry_run else [],
            "backup": done.backup.as_dict() if done.backup else None,
            "runbook": done.runbook.commands if done.runbook else [],
            "policy": done.policy.describe(),
            **_failure(done.error),
        },
        human,
        json_,
    )
    _runbook_somewhere(done.runbook, json_output=json_)
    if done.error is not None:
        boundary.failed(done.error)


def _failure(error: PredeployError | None) -> dict[str, Any]:
    """A report's error line and exit code, when its run failed."""
    return {} if error is None else {"error": error.message, "exit_code": error.exit_code}


def _count(raw: str | None, flag: str) -> int | None:
    if raw is None:
        return None
    if not raw.strip().isdigit() or int(raw) < 1:
        boundary.fail(ConfigError(f"{flag} {raw!r} must be a whole number, 1 or more"))
    return int(raw)


@task(
    help={
        "env": _ENV_HELP,
        "applied": "mark migration NAME as applied (you completed it by hand)",
        "rolled_back": "mark failed migration NAME as rolled back (so migrate runs it again)",
        "json": _JSON_HELP,
    }
)
def resolve(
    c: Context,
    env: str | None = None,
    applied: str | None = None,
    rolled_back: str | None = None,
    json_: bool = False,
) -> None:
    """Mark a failed or hand-applied migration, with Prisma's semantics."""
    outcome = _run(
        env, json_, lambda s: commands.resolve(s, applied=applied, rolled_back=rolled_back)
    )
    name = applied or rolled_back
    human = f"migration {name} marked {outcome.replace('_', ' ')}"
    output.emit({"migration": name, "marked": outcome}, human, json_)


@task(
    help={
        "name": "what the migration does, in snake_case (add_user_avatar)",
        "env": _ENV_HELP,
        "json": _JSON_HELP,
        "post_deploy": "mark it post-deploy: it runs after the new release is live",
    }
)
def new(
    c: Context, name: str, env: str | None = None, json_: bool = False, post_deploy: bool = False
) -> None:
    """Create <migrations>/<UTC timestamp>_<name>/ with migration.sql and down.sql."""
    migration = _run(env, json_, lambda s: commands.new(s, name, post_deploy=post_deploy))
    note = (
        "both files hold only comments: write the SQL before migrating (a migration "
        "without statements is refused; a down.sql without them counts as none)"
    )
    data = {
        "name": migration.name,
        "phase": migration.phase,
        "folder": str(migration.folder),
        "files": [str(migration.sql_path), str(migration.folder / "down.sql")],
        "note": note,
    }
    output.emit(data, f"{migration.folder}\n{note}", json_)


def _progress(json_output: bool) -> backup_mod.ProgressFn:
    """Progress on a terminal as one rewritten line; otherwise a log event every 10 s."""
    if sys.stderr.isatty() and not json_output:

        def show(p: backup_mod.Progress) -> None:  # cleared at the step's end, as applying's
            size = f", {units.size(p.bytes_done)}" if p.bytes_done else ""
            text = (
                "" if p.final else fit(f"{p.phase}: {p.tables_done}/{p.tables_total} tables{size}")
            )
            sys.stderr.write(CLEAR + text + ("\r" if text else ""))
            sys.stderr.flush()

        return show
    last = [0.0]

    def note(p: backup_mod.Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= 10:
            last[0] = now
            structlog.get_logger("predeploy").info(
                "progress",
                phase=p.phase,
                tables_done=p.tables_done,
                tables_total=p.tables_total,
                bytes=p.bytes_done,
            )

    return note


@task(
    name="backup",
    help={
        "env": _ENV_HELP,
        "json": _JSON_HELP,
        "reason": "why: manual (default), pre-migrate, cron, ... (part of the file name)",
    },
)
def backup_task(
    c: Context, env: str | None = None, reason: str = "manual", json_: bool = False
) -> None:
    """Dump the database with pg_dump, verify the dump, keep it with a manifest."""
    progress = _progress(json_)
    result = _run(
        env,
        json_,
        lambda s: backup_mod.backup(db_target.of(s), s.backup, reason=reason, progress=progress),
    )
    data = {
        "path": str(result.path),
        "manifest": str(result.manifest),
        "sha256": result.sha256,
        "size": result.size,
        "seconds": round(result.seconds, 3),
        "dump_seconds": round(result.dump_seconds, 3),
        "verify_seconds": round(result.verify_seconds, 3),
        "tables": result.tables,
        "format": result.format,
        "pruned": [str(p) for p in result.pruned],
    }
    _emit(data, render_backup(result), json_)


@task(
    help={
        "env": _ENV_HELP,
        "json": _JSON_HELP,
        "check": "recompute every backup's sha256 (and record when); exit 1 if one differs",
    }
)
def backups(c: Context, env: str | None = None, json_: bool = False, check: bool = False) -> None:
    """List the env's backups: time, reason, size, migration state, checksum checks."""

    def run(settings: Settings) -> list[retention.BackupInfo]:
        found = retention.list_backups(settings.backup)
        return [retention.check(b) for b in found] if check else found

    found = _run(env, json_, run)
    _emit({"backups": [b.as_dict() for b in found]}, render_backups(found), json_)
    damaged = [b for b in found if b.last_check in ("MISMATCH", "missing")]
    if check and damaged:
        boundary.fail(
            CheckFailed(
                f"{len(damaged)} backup(s) fail their checksum: "
                + ", ".join(str(b.path) for b in damaged)
            )
        )


@task(
    name="restore",
    help={
        "env": _ENV_HELP,
        "backup": "the dump to restore (default: the env's newest backup, if undamaged)",
        "yes": "do not ask to type the database name (for scripts)",
        "other_database": "restore a backup whose manifest names another database, env or server",
        "json": _JSON_HELP,
    },
)
def restore_task(
    c: Context,
    env: str | None = None,
    backup: str | None = None,
    yes: bool = False,
    other_database: bool = False,
    json_: bool = False,
) -> None:
    """Restore a backup over the env's database, atomically, after a typed confirmation."""

    progress = _progress(json_)

    def run(settings: Settings) -> restore_mod.RestoreResult:
        run_id = log_mod.current_run_id()
        chosen = restore_mod.plan(
            settings, Path(backup) if backup else None, other_database=other_database,
            run_id=run_id,
        )  # fmt: skip
        try:
            confirm.require_typed(
                chosen.database,
                render_restore_plan(chosen),
                yes=yes,
                interactive=prompt.interactive(),
                ask=prompt.ask,
                action=f"restoring {chosen.database}",
            )
        except Refused as exc:  # it read the database: the refusal has its audit row
            restore_mod.refused(settings, chosen, exc, run_id)
            raise
        return restore_mod.restore(settings, chosen, progress, run_id=run_id)

    result = _run(env, json_, run)
    data = {
        "backup": str(result.backup),
        "database": result.database,
        "seconds": round(result.seconds, 3),
        "dropped": list(result.dropped),
    }
    _emit(
        data,
        f"restored {result.database} from {result.backup} in {result.seconds:.1f}s"
        + (
            f"; dropped what it did not have: {', '.join(result.dropped)}" if result.dropped else ""
        ),
        json_,
    )


@task(
    help={
        "env": _ENV_HELP,
        "json": _JSON_HELP,
        "save": "write the expected schema's fingerprint to FILE (e.g. in CI, for --expected)",
        "expected": "compare with the fingerprint in FILE instead of building a shadow",
        "revert_sql": "print the SQL that would bring live back to the migrations' schema",
        "adopt_sql": "print a migration that would make the history match live",
    }
)
def drift(
    c: Context,
    env: str | None = None,
    json_: bool = False,
    save: str | None = None,
    expected: str | None = None,
    revert_sql: bool = False,
    adopt_sql: bool = False,
) -> None:
    """Compare the live schema with what the applied migrations build; exit 1 on drift."""
    from predeploy import drift as drift_mod  # noqa: PLC0415 (drift's machinery)
    from predeploy.commands.drift import check  # noqa: PLC0415

    def run(settings: Settings) -> drift_mod.DriftReport:
        # PREDEPLOY_DRIFT_EXPECTED stands in for --expected, unless a new one is being saved
        saved = None if save else settings.drift_expected
        return check(
            settings,
            expected_file=Path(expected) if expected else saved,
            save=Path(save) if save else None,
        )

    report = _run(env, json_, run)
    data = report.as_dict()
    human = drift_mod.render(report)
    if revert_sql:
        data["revert"] = [s.as_dict() for s in drift_mod.revert_steps(report.differences)]
        human += "\n\n" + drift_mod.revert_sql(list(report.differences))
    if adopt_sql:
        data["adopt"] = [s.as_dict() for s in drift_mod.adopt_steps(report.differences)]
        human += "\n\n" + drift_mod.adopt_sql(list(report.differences))
    output.emit(data, human, json_)
    if report.drifted:
        boundary.fail(
            CheckFailed(
                f"{len(report.differences)} difference(s) between {report.database} and "
                f"{report.expected_from}: see above; nothing was changed"
            )
        )


@task(name="notify-test", help={"env": _ENV_HELP, "json": _JSON_HELP})
def notify_test(c: Context, env: str | None = None, json_: bool = False) -> None:
    """Send a test message to every PREDEPLOY_NOTIFY_URLS address and report each result."""
    from predeploy.integrations import notify  # noqa: PLC0415 (apprise only here)

    def run(settings: Settings) -> list[notify.Delivery]:
        config = notify.NotifyConfig(
            urls=settings.notify_urls,
            on=frozenset(settings.notify_on),
            timeout=settings.notify_timeout,
            secrets=settings.secrets(),
        )
        return notify.test(config, env=settings.env)

    deliveries = _run(env, json_, run)
    lines = [
        f"{'✓' if d.ok else '✗'} {d.url}  {d.seconds:.2f}s  {d.detail}".rstrip() for d in deliveries
    ]
    output.emit({"deliveries": [d.as_dict() for d in deliveries]}, "\n".join(lines), json_)
    failed = [d for d in deliveries if not d.ok]
    if failed:
        boundary.fail(
            CheckFailed(f"{len(failed)} of {len(deliveries)} notification URL(s) failed: see above")
        )


@task(help={"json": _JSON_HELP})
def init(c: Context, json_: bool = False) -> None:
    """Adopt predeploy in this app repository (adds lines only; prints the pm2 and cron lines).

    Adds predeploy's settings (commented out) to .env.example and its folders to
    .gitignore; changes nothing that exists.
    """

    def run(settings: Settings) -> adopt.Adopted:
        done = adopt.adopt(settings.root, settings.migrations_dir)
        done.suggestions = adopt.suggest_env(settings, default_env=env_name(None) == "dev")
        return done

    done = _run("dev", json_, run)
    output.emit(done.as_dict(), render_adopted(done), json_)


@task(name="up", help={"json": _JSON_HELP})
def db_up(c: Context, json_: bool = False) -> None:
    """Start (or reuse) the embedded dev PostgreSQL under .pgdata/."""
    server = _run("dev", json_, lambda s: embedded.start(s.pgdata))
    state = "started" if server.started else "already running"
    data = {"pgdata": str(server.pgdata), "pid": server.pid, "url": str(server.url), "state": state}
    _emit(data, f"embedded PostgreSQL {state} (pid {server.pid}): {server.url}", json_)


@task(name="down", help={"json": _JSON_HELP})
def db_down(c: Context, json_: bool = False) -> None:
    """Stop the embedded dev PostgreSQL under .pgdata/ (its data stays)."""
    stopped = _run("dev", json_, lambda s: embedded.stop(s.pgdata))
    state = "stopped" if stopped else "not running"
    _emit({"state": state}, f"embedded PostgreSQL {state}", json_)


@task(name="url")
def db_url(c: Context) -> None:
    """Print the embedded dev database's URL (starting the server if needed)."""
    server = _run("dev", False, lambda s: embedded.start(s.pgdata))
    print(server.url)


db = Collection("db", db_up, db_down, db_url)
ns = Collection(
    check,
    status,
    migrate,
    rollback,
    resolve,
    new,
    backup_task,
    backups,
    restore_task,
    lint,
    health,
    deploy,
    maintenance,
    drift,
    notify_test,
    init,
    db,
)
