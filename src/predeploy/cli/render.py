"""Human renderings of the results of the commands that read (check, status, lint, health,
drift, backups, init, ...): pure functions from results to text. Those of the runs that
change a database are in ``render_run``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from predeploy._util import units
from predeploy.commands import summary

if TYPE_CHECKING:  # result types only: rendering one result imports no other command's code
    from predeploy.backup.dump import BackupResult
    from predeploy.backup.retention import BackupInfo
    from predeploy.commands.backup import BackedUp
    from predeploy.commands.backups import Listed
    from predeploy.commands.check import CheckResult
    from predeploy.commands.db import Server, Stopped
    from predeploy.commands.drift import Drifted
    from predeploy.commands.health import HealthReport
    from predeploy.commands.init import Adopted
    from predeploy.commands.lint import Linted
    from predeploy.commands.new import Created
    from predeploy.commands.notify_test import Sent
    from predeploy.commands.resolve import Resolved
    from predeploy.commands.status import StatusReport
    from predeploy.migrate.lint import LintReport
    from predeploy.migrate.status import Entry, Status
    from predeploy.programs.pgbin import PgProgram

__all__ = [
    "MARK",
    "render_adopted",
    "render_backed_up",
    "render_backup",
    "render_backups",
    "render_check",
    "render_created",
    "render_drift",
    "render_health",
    "render_lint",
    "render_linted",
    "render_listed",
    "render_resolved",
    "render_runs",
    "render_sent",
    "render_server",
    "render_status",
    "render_status_report",
    "render_stopped",
]

MARK = {"ok": "✓", "skipped": "-", "failed": "✗", "interrupted": "✗"}


def render_check(result: CheckResult) -> str:
    source = "embedded dev server" if result.embedded else result.url
    rows = [
        ("env", result.env),
        ("database", f"{result.database} on {source}"),
        ("server", f"PostgreSQL {result.server_version} on {result.server}"),
        ("policy", result.policy),
        ("user", result.user),
        ("latency", f"{result.latency_ms:.2f} ms"),
        ("role", "standby (read-only, in recovery)" if result.in_recovery else "primary"),
        ("pg_dump", _program(result.pg_dump)),
        ("pg_restore", _program(result.pg_restore)),
        *([("hosts", result.hosts)] if result.hosts else []),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    if result.tools_warning:
        lines.append(f"warning: {result.tools_warning}")
    return "\n".join(lines)


def _program(program: PgProgram | None) -> str:
    if program is None:
        return "not found"
    return f"{program.path} ({program.version}, {program.source})"


def render_status(status: Status, *, whole: bool = True, rest: str = "--all") -> str:
    """The table of every migration; a long history (more than ``summary.TABLE``) without
    ``whole`` gets the summary: the counts, the latest applied, and the migrations that are
    not applied, each state's list capped (``rest``: the command that shows them all)."""
    if not status.entries:
        return "no migrations on disk and none recorded"
    counts = status.counts()
    summary_line = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    verdict = "up to date" if status.up_to_date else "needs attention"
    if whole or len(status.entries) <= summary.TABLE:
        return "\n".join([*_status_rows(status.entries), "", f"{summary_line}: {verdict}"])
    applied = status.having("applied")
    lines = [f"{len(status.entries)} migration(s): {summary_line}"]
    if applied:
        lines.append(f"latest applied: {applied[-1].name}  {_finished(applied[-1])}".rstrip())
    for state in ("failed", "edited", "missing", "pending"):
        entries = status.having(state)
        if entries:
            lines += [f"{state} ({len(entries)}):"]
            rows = [f"  {row}" for row in _status_rows(entries)]
            lines += summary.capped(rows, summary.WHOLE, rest)
    return "\n".join([*lines, "", f"{summary_line}: {verdict} (every migration: {rest})"])


def _status_rows(entries: Sequence[Entry]) -> list[str]:
    width = max(len(e.name) for e in entries)
    lines = []
    for entry in entries:
        when = _finished(entry)
        phase = (
            " (post-deploy)" if entry.migration and entry.migration.phase == "post-deploy" else ""
        )
        mark = _MARKS[entry.state] + phase
        lines.append(f"{entry.name:<{width}}  {mark:<32}  {when}".rstrip())
    return lines


def _finished(entry: Entry) -> str:
    row = entry.row
    return row.finished_at.strftime("%Y-%m-%d %H:%M:%S UTC") if row and row.finished_at else ""


_MARKS = {
    "applied": "applied",
    "pending": "pending",
    "failed": "FAILED",
    "edited": "EDITED since applied",
    "missing": "MISSING on disk",
}


def render_backup(result: BackupResult) -> str:
    lines = [
        f"backup verified: {result.path}",
        f"  {units.size(result.size)}, {result.tables} tables, {result.format} format, "
        f"{result.seconds:.1f}s, sha256 {result.sha256}",
    ]
    lines += [f"  pruned {path.name}" for path in result.pruned]
    return "\n".join(lines)


def render_backups(found: list[BackupInfo]) -> str:
    if not found:
        return "no backups"
    lines = []
    for info in found:
        data = info.as_dict()
        state = "verified" if info.verified else ("MISSING" if not info.present else "UNVERIFIED")
        if info.last_check != "at creation":
            checked = str(data["checked_at"] or "")[:19].replace("T", " ")
            state += f", checksum {info.last_check} {checked}Z"
        else:
            state += " (checksum checked when made)"
        latest = data["latest_migration"] or "(no migrations)"
        lines.append(
            f"{info.created_at:%Y-%m-%d %H:%M:%S}Z  {data['reason']:<12} "
            f"{units.size(int(data['size'] or 0)):>10}  {data['applied_migrations']} applied, "
            f"latest {latest}  {state}  {info.path}"
        )
    return "\n".join(lines)


def render_health(report: HealthReport) -> str:
    width = max((len(c.name) for c in report.checks), default=0)
    lines = [
        f"{MARK['ok' if c.ok else 'failed']} {c.name:<{width}}  {c.seconds:6.3f}s  {c.detail}"
        for c in report.checks
    ]
    lines.append("healthy" if report.ok else f"UNHEALTHY: {len(report.failed)} check(s) failed")
    return "\n".join(lines)


def render_runs(runs: list[dict[str, object]]) -> str:
    if not runs:
        return ""
    lines = ["", "last runs:"]
    # columns as wide as their longest value: "refused: confirmation (no terminal)" is long
    command = max(len(str(run["command"])) for run in runs)
    outcome = max(len(str(run["outcome"])) for run in runs)
    for run in runs:
        started = run["started_at"]
        when = started.strftime("%Y-%m-%d %H:%M:%S") if hasattr(started, "strftime") else started
        lines.append(
            f"  {when}  {run['command']!s:<{command}}  {run['outcome']!s:<{outcome}}  "
            f"{run['migrations']} migration(s)  by {run['operator']}@{run['host']}"
        )
    return "\n".join(lines)


def render_lint(report: LintReport) -> str:
    lines: list[str] = []
    for f in report.findings:
        where = f"{f.migration}/migration.sql:{f.line}:{f.column}"
        level = "waived" if f.waived else f.severity
        sizes = ", ".join(f"{t.table} ~{t.rows:,} rows {units.size(t.bytes)}" for t in f.tables)
        why = f" (raised: {sizes})" if f.raised else (f" ({sizes})" if sizes else "")
        lines.append(f"{level:<7} {where}  {f.rule}{why}")
        lines.append(f"        {f.statement}")
        lines.append(f"        {_sentences(f.message, f.help)}")
    for item in report.files:
        if item.waivers:
            lines.append(f"waiver  {item.migration}: allows {', '.join(item.waivers)}")
    counts = report.counts()
    lines.append(
        f"lint: {len(report.files)} file(s), {counts['error']} error(s), "
        f"{counts['warning']} warning(s), {counts['info']} info, {counts['waived']} waived"
    )
    return "\n".join(lines)


def render_adopted(done: Adopted) -> str:
    lines = [f"predeploy in {done.root}: migrations in {done.migrations}"]
    lines += [f"  {line}" for line in done.changed] or ["  nothing to add"]
    lines += [f"  {line}" for line in done.unchanged]
    lines += [
        "",
        "pm2 post-deploy hook (ecosystem.config.js, deploy.production['post-deploy']):",
        f"  {done.post_deploy}",
        "crontab line (crontab -e, as the user that runs the app):",
        f"  {done.crontab}",
        "or, instead of cron, a systemd timer (as root: write these two files, then",
        "  systemctl daemon-reload && systemctl enable --now predeploy-maintenance.timer):",
    ]
    for unit, text in done.systemd.items():
        lines += [f"  # /etc/systemd/system/{unit}"]
        lines += [f"  {line}".rstrip() for line in text.splitlines()]
    lines.append(f"examples (ecosystem.config.js, hooks, crontab, units): {done.examples}")
    if done.suggestions:
        lines += ["", *done.suggestions]
    return "\n".join(lines)


def _sentences(message: str, help_: str | None) -> str:
    """A finding's message and help as sentences ("... old schema. Make it ...")."""
    if not help_:
        return message
    stop = "" if message.rstrip().endswith((".", "!", "?")) else "."
    return f"{message.rstrip()}{stop} {help_[:1].upper()}{help_[1:]}"


def render_status_report(report: StatusReport, *, whole: bool) -> str:
    """`predeploy status`: the table (or a long history's summary), the last runs, and the
    drift report when asked for."""
    from predeploy._util.pasted import program  # noqa: PLC0415 (the name a pasted line uses)

    every = f"{program()} status --env {report.env} --all"
    human = render_status(report.status, whole=whole, rest=every) + render_runs(report.runs)
    if report.drift is not None:
        from predeploy.drift import render  # noqa: PLC0415 (drift's machinery)

        human += "\n\n" + render(report.drift)
    return human


def render_drift(done: Drifted) -> str:
    """`predeploy drift`: the differences, then the revert or adopt SQL asked for."""
    from predeploy import drift  # noqa: PLC0415 (drift's machinery)

    human = drift.render(done.report)
    differences = list(done.report.differences)
    if done.options.revert_sql:
        human += "\n\n" + drift.revert_sql(differences)
    if done.options.adopt_sql:
        human += "\n\n" + drift.adopt_sql(differences)
    return human


def render_linted(done: Linted) -> str:
    return render_lint(done.report)


def render_backed_up(done: BackedUp) -> str:
    return render_backup(done.result)


def render_listed(done: Listed) -> str:
    return render_backups(done.found)


def render_resolved(done: Resolved) -> str:
    return f"migration {done.migration} marked {done.marked.replace('_', ' ')}"


def render_created(done: Created) -> str:
    from predeploy.commands.new import NOTE  # noqa: PLC0415

    return f"{done.migration.folder}\n{NOTE}"


def render_sent(done: Sent) -> str:
    return "\n".join(
        f"{'✓' if d.ok else '✗'} {d.url}  {d.seconds:.2f}s  {d.detail}".rstrip()
        for d in done.deliveries
    )


def render_server(done: Server) -> str:
    return f"embedded PostgreSQL {done.state} (pid {done.server.pid}): {done.server.url}"


def render_stopped(done: Stopped) -> str:
    return f"embedded PostgreSQL {done.state}"
