"""Human renderings of the runs that change a database (migrate, deploy, maintenance,
rollback, restore): their reports, the checklist line of a step, the runbook."""

from __future__ import annotations

from typing import TYPE_CHECKING

from predeploy._util import units
from predeploy.cli.render import MARK, render_health, render_lint
from predeploy.commands import summary

if TYPE_CHECKING:  # result types only: rendering one result imports no other command's code
    from predeploy.commands.deploy import DeployReport
    from predeploy.commands.maintenance import MaintenanceReport
    from predeploy.commands.migrate_report import Pending, Report
    from predeploy.commands.restore import RestorePlan, RestoreResult
    from predeploy.commands.rollback import Undone
    from predeploy.commands.runbook import Runbook
    from predeploy.commands.steps import Step
    from predeploy.migrate.lint import LintReport

__all__ = [
    "render_deploy",
    "render_maintenance",
    "render_report",
    "render_restore_plan",
    "render_restored",
    "render_rolled_back",
    "render_runbook",
    "render_step",
]


def render_restore_plan(chosen: RestorePlan) -> str:
    info = chosen.backup.as_dict()
    what, alone = f"database {chosen.database}", ""
    if chosen.schema is not None:  # a schema-per-tenant target's restore replaces it alone
        what, alone = f"schema {chosen.schema} of {what}", ", no other schema"
    lines = [
        f"This replaces {what} (env {chosen.env}, {chosen.target}){alone}:",
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
    lines.append(f"Everything written to {what} since {info['created_at']} is lost.")
    return "\n".join(lines)


def render_step(step: Step) -> str:
    detail = f"  ({step.detail})" if step.detail and step.outcome != "failed" else ""
    return f"{MARK.get(step.outcome, '?')} {step.name:<18} {step.seconds:6.2f}s{detail}"


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
    from predeploy._util.pasted import command  # noqa: PLC0415 (only with migrations waiting)

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


def render_deploy(report: DeployReport, *, verbose: bool = False) -> str:
    lines: list[str] = []
    for migrated in (report.migrate, report.post):
        if migrated is not None:
            shown = render_report(
                migrated,
                dry_run=report.dry_run,
                runbook=report.own_runbook is None,
                verbose=verbose,
                waiting=False,
            )
            lines.append(shown)
    lines += [f"warning: {w}" for w in report.warnings]
    if report.health is not None:
        lines.append(render_health(report.health))
    if report.rolling is not None:
        lines += _hosts(report)
    elif report.dry_run:
        lines += _would_deploy(report) if report.error is None else []
    elif report.error is None:
        pids = ", ".join(str(p.pid) for p in report.after)
        lines.append(f"deployed: {report.app} reloaded and healthy (pids {pids})")
    if report.own_runbook is not None:
        lines += _runbook(report.own_runbook)
    return "\n".join(lines)


def _hosts(report: DeployReport) -> list[str]:
    """A deploy over app hosts: one line per host (its wave, outcome, pids), then the end."""
    rolling = report.rolling
    assert rolling is not None  # noqa: S101 (the caller's test)
    width = max(len(r.name) for r in rolling.results)
    lines = ["hosts:"]
    for r in rolling.results:
        pids = f" pids {','.join(map(str, r.pids))}" if r.pids else ""
        detail = f"  {r.detail}" if r.detail else ""
        lines.append(f"  {r.name:<{width}}  wave {r.wave}  {r.outcome}{pids}{detail}")
    names = ", ".join(r.name for r in rolling.results)
    if report.dry_run and report.error is None:
        lines += _post_preview(report)
        lines.append(
            f"dry run: nothing was changed; {report.app} was not {report.action}ed on {names}"
        )
    elif report.error is None and not report.dry_run:
        lines.append(
            f"deployed: {report.app} {report.action}ed on {len(rolling.results)} host(s) "
            f"({names}) and healthy"
        )
    return lines


def _would_deploy(report: DeployReport) -> list[str]:
    """A deploy's dry run, after the pre-deploy phase's: the reload, then the post phase."""
    processes = len(report.before)
    mode = "cluster" if report.before and all(p.cluster for p in report.before) else "fork"
    lines = [
        "",
        f"then it would run pm2 {report.action} {report.app} ({processes} process(es), {mode} "
        f"mode) and wait until it is healthy",
    ]
    lines += _post_preview(report)
    lines += ["", f"dry run: nothing was changed; {report.app} was not {report.action}ed"]
    return lines


def _post_preview(report: DeployReport) -> list[str]:
    """What the post-deploy phase would apply after the reload, with its SQL."""
    if not report.post_preview:
        return []
    names = ", ".join(p.name for p in report.post_preview)
    lines = [f"then apply {len(report.post_preview)} post-deploy migration(s): {names}"]
    for p in report.post_preview:
        lines += ["", f"-- {p.name}/migration.sql", (p.sql or "").rstrip()]
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


def render_rolled_back(done: Undone) -> str:
    """What a rollback undid (or, in a dry run, would undo, with the SQL), and its runbook."""
    data = done.as_dict()
    if done.dry_run:
        human = "\n".join(
            f"-- would undo {u['name']} with {u['down']}:\n{u['sql']}" for u in data["would_undo"]
        )
    else:
        human = "\n".join(f"rolled back {u['name']}" for u in data["rolled_back"])
    if done.runbook is not None:
        human += "\n" + render_runbook(done.runbook)
    return human


def render_restored(r: RestoreResult) -> str:
    dropped = f"; dropped what it did not have: {', '.join(r.dropped)}" if r.dropped else ""
    what = r.database if r.schema is None else f"schema {r.schema} of {r.database}"
    return f"restored {what} from {r.backup} in {r.seconds:.1f}s{dropped}"
