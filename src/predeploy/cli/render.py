"""Human renderings of results: pure functions from results to text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from predeploy._util import units
from predeploy.commands import summary

if TYPE_CHECKING:  # result types only: rendering one result imports no other command's code
    from predeploy.backup.dump import BackupResult
    from predeploy.backup.retention import BackupInfo
    from predeploy.commands.check import CheckResult
    from predeploy.commands.deploy import DeployReport
    from predeploy.commands.health import HealthReport
    from predeploy.commands.init import Adopted
    from predeploy.commands.maintenance import MaintenanceReport
    from predeploy.commands.migrate import Pending, Report
    from predeploy.commands.restore import RestorePlan
    from predeploy.commands.runbook import Runbook
    from predeploy.commands.steps import Step
    from predeploy.migrate.lint import LintReport
    from predeploy.migrate.status import Entry, Status
    from predeploy.programs.pgbin import PgProgram

__all__ = [
    "render_adopted",
    "render_backup",
    "render_backups",
    "render_check",
    "render_deploy",
    "render_health",
    "render_lint",
    "render_maintenance",
    "render_report",
    "render_restore_plan",
    "render_runbook",
    "render_runs",
    "render_status",
    "render_step",
]


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


def render_restore_plan(chosen: RestorePlan) -> str:
    info = chosen.backup.as_dict()
    lines = [
        f"This replaces database {chosen.database} (env {chosen.env}, {chosen.target}):",
        f"  now:    {chosen.current_tables} tables, latest migration "
        f"{chosen.current_latest_migration or '(none)'}",
        f"  backup: {chosen.backup.path}",
        f"          taken {info['created_at']} ({info['reason']}) of database "
        f"{info['database']} in env {info['env']}, "
        f"{len(chosen.backup.manifest.tables)} tables, "
        f"{info['applied_migrations']} migration(s) applied, latest "
        f"{info['latest_migration'] or '(none)'}; checksum checked",
    ]
    lines += [f"  NOT THIS DATABASE'S: {m}" for m in chosen.mismatches]
    if chosen.policy:
        lines.append(f"  policy: {chosen.policy}")
    lines.append(f"Everything written to {chosen.database} since {info['created_at']} is lost.")
    return "\n".join(lines)


_MARK = {"ok": "✓", "skipped": "-", "failed": "✗", "interrupted": "✗"}


def render_step(step: Step) -> str:
    detail = f"  ({step.detail})" if step.detail and step.outcome != "failed" else ""
    return f"{_MARK.get(step.outcome, '?')} {step.name:<18} {step.seconds:6.2f}s{detail}"


def render_report(
    report: Report,
    *,
    dry_run: bool = False,
    runbook: bool = True,
    verbose: bool = False,
    waiting: bool = True,
) -> str:
    """A migrate run's report. A long run (more than ``summary.WHOLE`` migrations or lint
    findings) gets counts and the few that matter; ``verbose`` (-v) and a dry run list all.
    ``waiting``: name the other phase's migrations left waiting, with the command that
    applies them (a deploy applies them itself)."""
    if not report.pending and report.error is None:
        return _nothing_pending(report, waiting=waiting)
    whole = verbose or dry_run
    lines = _pending_lines(report, whole=whole)
    if report.lint is not None and report.lint.findings:
        lines += _report_lint(report.lint, whole=whole)
    if report.drift is not None and report.drift.drifted:
        drift = [f"drift: {d.kind} {d.name}: {d.change}" for d in report.drift.differences]
        rest = f"predeploy drift --env {report.env}"
        lines += drift if whole else summary.capped(drift, summary.WHOLE, rest)
    lines += [f"warning: {w}" for w in report.warnings]
    from predeploy.migrate.blockers import describe as describe_blocker  # noqa: PLC0415

    lines += [f"blocking session: {describe_blocker(b)}" for b in report.blockers]
    if dry_run:
        for p in report.pending:
            lines += ["", f"-- {p.name}/migration.sql", (p.sql or "").rstrip()]
        lines += ["", "dry run: nothing was changed"]
    for result in report.rehearsal:
        lines.append(
            f"rehearsed {result.name}: {result.outcome}"
            + (f" in {result.seconds:.3f}s" if result.seconds is not None else "")
            + (f" ({result.detail})" if result.detail else "")
        )
    if report.rehearsal:
        lines.append("rehearsal: everything was rolled back")
    lines += _applied_lines(report, whole=whole)
    if waiting and report.applied and report.later and report.error is None:
        lines += _waiting(report)
    if report.backup is not None:
        lines.append(f"backup: {report.backup.path}")
    if runbook and report.runbook is not None:
        lines += _runbook(report.runbook)
    return "\n".join(lines)


def _pending_lines(report: Report, *, whole: bool) -> list[str]:
    """A line per pending migration; for a long list, the counts, the first and the last
    name, and a line for each migration that does not parse."""
    if not report.pending:
        return []
    header = f"pending on {report.database} ({report.env}):"
    if whole or len(report.pending) <= summary.WHOLE:
        return [header, *(_pending_line(p) for p in report.pending)]
    unparsed = [_pending_line(p) for p in report.pending if p.statements is None]
    outside = sum(not p.transactional for p in report.pending)
    downs = sum(p.has_down for p in report.pending)
    return [
        f"{header} {len(report.pending)} migration(s), {outside} outside a transaction, "
        f"{downs} with down.sql (-v lists each): {summary.span([p.name for p in report.pending])}",
        *summary.capped(unparsed, summary.WHOLE, "-v lists every one"),
    ]


def _pending_line(p: Pending) -> str:
    how = "in a transaction" if p.transactional else "outside a transaction"
    down = "down.sql" if p.has_down else "no down.sql"
    count = (
        "? statement(s) (it does not parse)"
        if p.statements is None
        else (f"{p.statements} statement(s)")
    )
    return f"  {p.name}  {count}, {how}, {down}, {p.phase}"


def _report_lint(lint: LintReport, *, whole: bool) -> list[str]:
    """Every finding while few (or -v); else the question's digest: counts, errors, and the
    warnings on the largest live tables."""
    if whole or len(lint.findings) <= summary.WHOLE:
        return [render_lint(lint)]
    return summary.lint_lines(lint, "-v, and the run's log file")


def _applied_lines(report: Report, *, whole: bool) -> list[str]:
    """A line per applied migration; for a long run, the count, the time and the slowest."""
    applied = report.applied
    if whole or len(applied) <= summary.WHOLE:
        return [f"applied {a.name} in {a.seconds:.3f}s" for a in applied]
    slowest = sorted(applied, key=lambda a: -a.seconds)[: summary.ENDS]
    return [
        f"applied {len(applied)} migration(s) in {sum(a.seconds for a in applied):.3f}s "
        f"(-v lists each): {summary.span([a.name for a in applied])}",
        "  slowest: " + ", ".join(f"{a.name} {a.seconds:.3f}s" for a in slowest),
    ]


def _nothing_pending(report: Report, *, waiting: bool = True) -> str:
    if not report.later:
        return f"{report.database} ({report.env}): nothing pending, up to date"
    head = f"{report.database} ({report.env}): no {report.phase} migration pending"
    return "\n".join([head, *_waiting(report)]) if waiting else head


def _waiting(report: Report) -> list[str]:
    """The other phase's pending migrations, and the command line that applies them."""
    from predeploy.commands.runbook import command  # noqa: PLC0415 (only with migrations waiting)

    names, env = ", ".join(report.later), report.env
    if report.phase == "pre-deploy":
        return [
            f"{len(report.later)} migration(s) wait for the post-deploy phase, once the new "
            f"release is live: {names}; then apply them with:",
            f"  {command('migrate', '--env', env, '--post-deploy')}",
            f"  (or {command('deploy', '--env', env)}: the pm2 reload, then those)",
        ]
    return [
        f"{len(report.later)} pre-deploy migration(s) are pending and go first: {names}; "
        f"apply them with:",
        f"  {command('migrate', '--env', env)}",
    ]


def render_runbook(runbook: Runbook) -> str:
    """A runbook after a report: a blank line, where it is kept, its commands."""
    return "\n".join(_runbook(runbook))


def _runbook(runbook: Runbook) -> list[str]:
    if not runbook.commands:
        return []
    where = f" (also in {runbook.path})" if runbook.path else ""
    where = f" (not saved: {runbook.unsaved})" if runbook.unsaved else where
    here = [f"# run these lines in {runbook.root}"] if runbook.root is not None else []
    return ["", f"runbook{where}:", *here, *runbook.commands]


def render_health(report: HealthReport) -> str:
    width = max((len(c.name) for c in report.checks), default=0)
    lines = [
        f"{_MARK['ok' if c.ok else 'failed']} {c.name:<{width}}  {c.seconds:6.3f}s  {c.detail}"
        for c in report.checks
    ]
    lines.append("healthy" if report.ok else f"UNHEALTHY: {len(report.failed)} check(s) failed")
    return "\n".join(lines)


def render_deploy(report: DeployReport, *, verbose: bool = False) -> str:
    lines: list[str] = []
    for migrated in (report.migrate, report.post):
        if migrated is not None:
            shown = render_report(
                migrated,
                dry_run=report.dry_run,
                runbook=report.runbook is None,
                verbose=verbose,
                waiting=False,
            )
            lines.append(shown)
    lines += [f"warning: {w}" for w in report.warnings]
    if report.health is not None:
        lines.append(render_health(report.health))
    if report.dry_run:
        lines += _would_deploy(report) if report.error is None else []
    elif report.error is None:
        pids = ", ".join(str(p.pid) for p in report.after)
        lines.append(f"deployed: {report.app} reloaded and healthy (pids {pids})")
    if report.runbook is not None:
        lines += _runbook(report.runbook)
    return "\n".join(lines)


def _would_deploy(report: DeployReport) -> list[str]:
    """A deploy's dry run, after the pre-deploy phase's: the reload, then the post phase."""
    processes = len(report.before)
    mode = "cluster" if report.before and all(p.cluster for p in report.before) else "fork"
    lines = [
        "",
        f"then it would run pm2 {report.action} {report.app} ({processes} process(es), {mode} "
        f"mode) and wait until it is healthy",
    ]
    if report.post_preview:
        names = ", ".join(p.name for p in report.post_preview)
        lines.append(f"then apply {len(report.post_preview)} post-deploy migration(s): {names}")
        for p in report.post_preview:
            lines += ["", f"-- {p.name}/migration.sql", (p.sql or "").rstrip()]
    lines += ["", f"dry run: nothing was changed; {report.app} was not {report.action}ed"]
    return lines


def render_maintenance(report: MaintenanceReport) -> str:
    lines: list[str] = []
    if report.backup is not None:
        lines.append(f"backup: {report.backup.path} ({units.size(report.backup.size)})")
        lines += [f"pruned: {path}" for path in report.backup.pruned]
    if report.health is not None:
        lines.append(render_health(report.health))
    if report.drift is not None and not report.drift.drifted:
        lines.append(f"drift: none ({report.drift.compared} objects compared)")
    if report.pruned_logs:
        lines.append(f"logs: removed {len(report.pruned_logs)} run log(s) and runbook(s)")
    lines += [f"note: {item}" for item in report.notes]
    lines += [f"needs attention: {item}" for item in report.needs_attention]
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
