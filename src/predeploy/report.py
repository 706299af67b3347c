"""Human renderings of results: pure functions from results to text."""

from __future__ import annotations

from predeploy.backup import BackupResult
from predeploy.check import CheckResult
from predeploy.commands import MigrateResult
from predeploy.pgbin import PgProgram
from predeploy.restore import RestorePlan
from predeploy.retention import BackupInfo
from predeploy.status import Status

__all__ = [
    "render_backup",
    "render_backups",
    "render_check",
    "render_migrate",
    "render_restore_plan",
    "render_status",
]


def render_check(result: CheckResult) -> str:
    source = "embedded dev server" if result.embedded else result.url
    rows = [
        ("env", result.env),
        ("database", f"{result.database} on {source}"),
        ("server", f"PostgreSQL {result.server_version}"),
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


def render_status(status: Status) -> str:
    if not status.entries:
        return "no migrations on disk and none recorded"
    width = max(len(e.name) for e in status.entries)
    lines = []
    for entry in status.entries:
        when = ""
        if entry.row is not None and entry.row.finished_at is not None:
            when = entry.row.finished_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(f"{entry.name:<{width}}  {_MARKS[entry.state]:<18}  {when}".rstrip())
    counts = status.counts()
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    verdict = "up to date" if status.up_to_date else "needs attention"
    return "\n".join([*lines, "", f"{summary}: {verdict}"])


def render_migrate(result: MigrateResult) -> str:
    header = f"{result.target} (PostgreSQL {result.server_version})"
    if not result.applied:
        return f"{header}\nnothing to apply: up to date"
    lines = [header] + [
        f"applied {a.name} in {a.seconds:.3f}s"
        + ("" if a.transactional else " (outside a transaction)")
        + (f" after {a.attempts} tries" if a.attempts > 1 else "")
        for a in result.applied
    ]
    total = sum(a.seconds for a in result.applied)
    return "\n".join([*lines, f"{len(result.applied)} migration(s) applied in {total:.2f}s"])


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
        f"  {_mb(result.size)}, {result.tables} tables, {result.format} format, "
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
        state = "verified" if info.verified else ("MISSING" if not info.present else "unverified")
        latest = data["latest_migration"] or "(no migrations)"
        lines.append(
            f"{info.created_at:%Y-%m-%d %H:%M:%S}Z  {data['reason']:<12} "
            f"{_mb(int(data['size'] or 0)):>10}  {data['applied_migrations']} applied, "
            f"latest {latest}  {state}  {info.path}"
        )
    return "\n".join(lines)


def render_restore_plan(chosen: RestorePlan) -> str:
    info = chosen.backup.as_dict()
    return "\n".join(
        [
            f"This replaces database {chosen.database} ({chosen.target}):",
            f"  now:    {chosen.current_tables} tables, latest migration "
            f"{chosen.current_latest_migration or '(none)'}",
            f"  backup: {chosen.backup.path} ({info['created_at']}, {info['reason']}), "
            f"{len(chosen.backup.manifest.get('tables') or [])} tables, latest migration "
            f"{info['latest_migration'] or '(none)'}",
            "Everything written since that backup is lost.",
        ]
    )


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"
