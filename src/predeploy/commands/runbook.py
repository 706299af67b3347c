"""The runbook: the exact commands that undo what a run changed, and only that.

Printed at the end of every run that changed something or failed, and kept under the log
folder. Commands are shell-quoted, to paste as printed. What it says:

- after a run that changed nothing (a refusal, a lock, a rolled-back error): that nothing
  was changed, and what helps (run again once the cause is fixed); never a restore;
- after applying: the rollback of exactly the migrations this run applied, by name, then
  the restore of this run's backup (pm2 stop/start around it) as the last resort, with the
  writes it would discard spelled out;
- after a migration that stopped part-way outside a transaction: how to mark it.
"""

from __future__ import annotations

import contextlib
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

from predeploy._util.log import FILE_ONLY, log_disk_failed
from predeploy._util.pasted import command, targeted
from predeploy.config.settings import Settings
from predeploy.errors import Interrupted, PredeployError
from predeploy.integrations.pm2 import home_prefix as pm2_home_prefix
from predeploy.integrations.pm2 import pasted as pm2_line
from predeploy.migrate.outcome import Applied, MigrationFailed
from predeploy.migrate.plan import OutOfPhase

__all__ = [
    "Runbook",
    "TakenBackup",
    "UndoFailed",
    "after_rollback",
    "again_words",
    "build_runbook",
    "left_failed_by",
    "part_way_lines",
    "pm2_command",
    "restore_lines",
    "undo_lines",
    "write_runbook",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Runbook:
    commands: list[str]  # comments (#) explain, the other lines are commands
    path: Path | None
    unsaved: str | None = None  # why it could not be kept under the log folder
    root: Path | None = None  # where its predeploy lines run (settings and migrations there)

    def text(self) -> str:
        return "\n".join(self.commands)


@dataclass(frozen=True)
class TakenBackup:
    """The backup a run took: where, and when (what a restore goes back to)."""

    path: Path
    created_at: datetime


def pm2_command(settings: Settings, *words: str) -> str:
    """A predeploy line that asks pm2 (``health`` with PREDEPLOY_PM2_APP set, ``deploy``):
    after the PM2_HOME this run has, as the pm2 lines are, so that pasted in a shell
    without it, it asks the same daemon (not ~/.pm2's, where no app runs)."""
    line = command(*words)
    return pm2_home_prefix() + line if settings.pm2_app else line


def build_runbook(
    settings: Settings,
    *,
    backup: TakenBackup | None,
    applied: list[Applied],
    error: PredeployError | None,
    run_id: str,
    has_down: dict[str, bool],
    again: list[str] | None = None,
) -> Runbook:
    """The commands for this run, written to <log dir>/runbook-<env>-<run id>.txt as well;
    ``again``: the words of the command that runs it again, as it was asked (a bare
    ``migrate --env ENV`` when not given)."""
    env = settings.env
    left_failed = left_failed_by(error)
    lines: list[str] = []
    if not applied and left_failed is None:
        lines += _nothing_changed(error, backup, again or ["migrate", "--env", env])
        return write_runbook(settings, run_id, lines)
    if left_failed is not None:
        lines += _stopped_part_way(env, left_failed, error, has_down.get(left_failed, False))
    if applied:
        # a stop between phases is no failure: what ran, ran as planned
        failed = error is not None and not isinstance(error, OutOfPhase)
        lines += _undo_applied(env, applied, has_down, failed=failed)
    lines += _restore(settings, backup, last_resort=bool(applied) or left_failed is not None)
    return write_runbook(settings, run_id, lines)


def _stopped_part_way(
    env: str, name: str, error: PredeployError | None, has_down: bool
) -> list[str]:
    ran = error.ran if isinstance(error, MigrationFailed | Interrupted) else ()
    lines = [f"# {name} stopped part-way outside a transaction and is recorded as failed;"]
    if ran:
        lines.append(f"# it had run {len(ran)} statement(s), which stay done:")
        lines += [f"#   {statement}" for statement in ran]
    else:
        lines.append("# none of its statements had completed (check what the cancelled one left)")
    lines += _invalid_lines(error)
    whole = " (its down.sql undoes the whole migration: use only the parts that apply)"
    lines += [
        f"# undo those by hand{whole if has_down else ''}, then mark it and migrate again:",
        command("resolve", "--env", env, "--rolled-back", name),
    ]
    return lines


def _invalid_lines(error: PredeployError | None) -> list[str]:
    """The INVALID indexes the failed CREATE INDEX CONCURRENTLY left, to drop before the
    resolve (a retry would fail on the name, or build beside a useless index)."""
    invalid = error.invalid if isinstance(error, MigrationFailed) else ()
    if not invalid:
        return []
    return [
        f"# its failed CREATE INDEX CONCURRENTLY left {len(invalid)} INVALID index(es) "
        "behind; drop them first (in psql, as the migration's role):",
        *(f"#   DROP INDEX CONCURRENTLY {index};" for index in invalid),
    ]


def part_way_lines(env: str, error: PredeployError | None, has_down: dict[str, bool]) -> list[str]:
    """How to mark the migration ``error`` left failed part-way; [] when it left none."""
    name = left_failed_by(error)
    return [] if name is None else _stopped_part_way(env, name, error, has_down.get(name, False))


def left_failed_by(error: PredeployError | None) -> str | None:
    """The migration ``error`` left recorded as failed part-way (outside a transaction)."""
    if isinstance(error, MigrationFailed) and error.left_failed:
        return error.name
    return error.left_failed if isinstance(error, Interrupted) else None


def again_words(verb: str, env: str, **flags: bool) -> list[str]:
    """``predeploy VERB --env ENV`` with the flags that are set (``post_deploy=True`` is
    ``--post-deploy``): a run as it was asked, to run again."""
    return [verb, "--env", env, *(f"--{k.replace('_', '-')}" for k, on in flags.items() if on)]


def _nothing_changed(
    error: PredeployError | None, backup: TakenBackup | None, again: list[str]
) -> list[str]:
    lines = ["# this run changed nothing in the database: there is nothing to undo"]
    if error is not None:
        lines += ["# once the cause (the error line) is dealt with, run it again:", command(*again)]
    if backup is not None:
        lines.append(f"# the backup it took is kept: {shlex.quote(str(backup.path))}")
    return lines


def _undo_applied(
    env: str, applied: list[Applied], has_down: dict[str, bool], *, failed: bool
) -> list[str]:
    newest_first = [a.name for a in reversed(applied)]
    names = _listed(newest_first)
    intro = (
        f"# before it failed, this run applied {len(applied)} migration(s): {names}"
        if failed
        else f"# this run applied {len(applied)} migration(s): {names}"
    )
    return [intro, *undo_lines(env, newest_first, has_down)]


def undo_lines(
    env: str, newest_first: list[str], has_down: dict[str, bool], how: str = "undo exactly those"
) -> list[str]:
    """The rollback of ``newest_first`` (names), or why only the backup undoes them."""
    missing = [name for name in newest_first if not has_down.get(name)]
    if missing:
        return [f"# no down.sql for {_listed(missing)}: undo by restoring the backup"]
    return [
        f"# {how}, newest first, with their down.sql:",
        command("rollback", "--env", env, "--migrations", ",".join(newest_first), "--yes"),
    ]


def _listed(names: list[str], most: int = 6) -> str:
    """``names`` for a comment line: all of them, or the first and last few of a long list
    (the report and the audit row have every name; the rollback command below too)."""
    if len(names) <= most:
        return ", ".join(names)
    shown = [*names[: most // 2], "...", *names[-2:]]
    return f"{', '.join(shown)} ({len(names)} in all)"


def _restore(
    settings: Settings, backup: TakenBackup | None, *, last_resort: bool, run: str = "this run"
) -> list[str]:
    if backup is None:
        return [f"# no backup was taken by {run}"] if last_resort else []
    since = f"{backup.created_at:%Y-%m-%d %H:%M:%S} UTC"
    pm2 = settings.pm2_app
    schema = settings.backup.schema  # a schema-per-tenant target's backup holds it alone
    if schema is None:
        lines = [
            f"# or, as a last resort, bring the whole database back to the moment before {run};",
            f"# this discards every write made since {since}, the application's included:",
        ]
    else:
        lines = [
            f"# or, as a last resort, bring schema {schema} alone back to the moment before "
            f"{run} (other schemas are left as they are);",
            f"# this discards every write made to schema {schema} since {since}, the "
            "application's included:",
        ]
    if pm2:
        lines.append(pm2_line(settings.pm2, "stop", pm2))
    where = settings.backup.where  # --env ENV (--target NAME)
    lines.append(command("restore", *where, "--backup", str(backup.path), "--yes"))
    if pm2:
        lines.append(pm2_line(settings.pm2, "start", pm2))
    return lines


@dataclass(frozen=True)
class UndoFailed:
    """The migration whose down.sql failed in a rollback, and what of it stays done:
    ``ran`` the first lines of the statements that ran outside a transaction (None: not
    known, the session was lost)."""

    name: str
    transactional: bool
    ran: tuple[str, ...] | None = ()


def after_rollback(
    settings: Settings,
    *,
    undone: list[str],
    backup: TakenBackup | None,
    run_id: str,
    post_deploy: frozenset[str] = frozenset(),
    failed: UndoFailed | None = None,
) -> Runbook:
    """The commands that undo a rollback: apply the migrations it undid again (``migrate``,
    with ``--post-deploy`` for those in ``post_deploy``), or, as a last resort, restore the
    backup it took first (a protected rollback takes one); after a down.sql that failed,
    what it left."""
    env = settings.env
    left = _down_left(failed) if failed is not None else []
    changed = bool(undone) or bool(failed is not None and failed.ran != ())
    if not changed:
        lines = [*_nothing_changed(None, backup, []), *left]
        return write_runbook(settings, run_id, lines)
    lines = left
    if undone:
        pre = [name for name in undone if name not in post_deploy]
        lines = [
            f"# this run undid {len(undone)} migration(s), newest first: {_listed(undone)}",
            *left,
            "# to apply them again:",
        ]
        if pre:
            lines.append(command("migrate", "--env", env))
        if len(pre) < len(undone):
            lines.append(command("migrate", "--env", env, "--post-deploy"))
    return write_runbook(settings, run_id, lines + _restore(settings, backup, last_resort=True))


def _down_left(failed: UndoFailed) -> list[str]:
    """What the failed down.sql left, and that its migration is still applied."""
    name = failed.name
    if failed.transactional:
        return [
            f"# the rollback of {name} failed: its down.sql ran in a transaction, which was "
            "rolled back:",
            f"# none of it ran and {name} is still applied (fix down.sql, then roll it back again)",
        ]
    lines = [f"# the rollback of {name} failed part-way: its down.sql runs outside a transaction;"]
    if failed.ran is None:
        lines.append("# how much of it ran is not known: check what it changed")
    elif failed.ran:
        lines.append(f"# it had run {len(failed.ran)} statement(s), which stay done:")
        lines += [f"#   {statement}" for statement in failed.ran]
    else:
        lines.append("# none of its statements had completed")
    redo = "redo those by hand (its migration.sql), or " if failed.ran != () else ""
    lines.append(
        f"# {name} is still recorded as applied: {redo}fix down.sql and roll it back again"
    )
    return lines


def restore_lines(settings: Settings, backup: TakenBackup | None, run: str) -> list[str]:
    """The last resort: ``backup`` restored (pm2 stop/start around it), taken before ``run``."""
    return _restore(settings, backup, last_resort=True, run=run)


def write_runbook(settings: Settings, run_id: str, lines: list[str]) -> Runbook:
    """The runbook of ``lines``, also written to <log dir>/runbook-<env>-<run id>.txt; what
    it prints and what it keeps have every secret masked (a ``PASSWORD '...'`` among the
    statements that ran, a password the server quoted)."""
    lines = [settings.scrubber.text(line) for line in lines]
    if settings.member is not None:  # a fleet's target: every line aimed at it
        lines = [targeted(line, settings.member.name) for line in lines]
        if settings.in_fleet:  # its section of the fleet run's one runbook
            return Runbook(lines, None)
    path = settings.log_dir / f"runbook-{settings.env}-{run_id}.txt"
    try:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    except OSError as exc:  # a full or read-only disk: it is printed all the same
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)  # never a runbook cut short by a full disk
        why = f"{path}: {exc.strerror or exc}"
        # the log folder's failure was said on stderr already, and the printed runbook says
        # "not saved": one warning for the one disk
        said = {FILE_ONLY: True} if log_disk_failed() else {}
        log.warning("runbook_not_written", path=str(path), detail=exc.strerror, **said)
        return Runbook(lines, None, why, settings.root)
    return Runbook(lines, path, root=settings.root)
