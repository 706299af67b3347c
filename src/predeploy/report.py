"""Human renderings of results: pure functions from results to text."""

from __future__ import annotations

from predeploy.check import CheckResult
from predeploy.pgbin import PgProgram

__all__ = ["render_check"]


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
