"""Human renderings of results: pure functions from results to text."""

from __future__ import annotations

from predeploy.check import CheckResult
from predeploy.commands import MigrateResult
from predeploy.pgbin import PgProgram
from predeploy.status import Status

__all__ = ["render_check", "render_migrate", "render_status"]


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
