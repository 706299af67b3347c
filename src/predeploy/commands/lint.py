"""`predeploy lint`: squawk over the pending migrations (every one with ``every``), sized by
the live tables; exit 1 on errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from predeploy._util import cache, lazy
from predeploy.config.settings import Settings
from predeploy.db import target as db_target
from predeploy.db.connect import Conn, catalog_session
from predeploy.db.failures import translated
from predeploy.errors import CheckFailed
from predeploy.migrate import discovery
from predeploy.migrate.discovery import Migration
from predeploy.migrate.history import read_history
from predeploy.migrate.phaselint import apply_phases
from predeploy.migrate.status import compare

if TYPE_CHECKING:
    from predeploy.migrate import lint as lint_mod
else:  # squawk's machinery only when linting
    lint_mod = lazy.module("predeploy.migrate.lint")

__all__ = ["Linted", "lint", "lint_migrations"]


@dataclass(frozen=True)
class Linted:
    """`predeploy lint`'s result: the report, failing the command when it has errors."""

    report: lint_mod.LintReport

    @property
    def error(self) -> CheckFailed | None:
        errors = self.report.errors
        if not errors:
            return None
        return CheckFailed(
            f"lint found {len(errors)} error(s): "
            + ", ".join(sorted({f"{f.migration} {f.rule}" for f in errors}))
        )

    def fleet_outcome(self) -> str:
        """A target's word in a fleet's lint: lint errors, warnings or clean."""
        if self.report.errors:
            return "lint errors"
        return "warnings" if self.report.active else "clean"

    def fleet_detail(self) -> dict[str, Any]:
        return {"linted": len(self.report.files), "findings": self.report.counts()}

    def as_dict(self) -> dict[str, Any]:
        return self.report.as_dict()


def lint(settings: Settings, *, every: bool = False) -> Linted:
    """Lint the pending migrations (every migration with ``every``) against the live sizes."""
    found = discovery.discover(settings.migrations_dir)
    target = db_target.of(settings)
    with catalog_session(target.direct, purpose="lint") as conn:
        chosen = found if every else compare(found, read_history(conn, target.history)).pending
        return Linted(lint_migrations(settings, conn, chosen))


def lint_migrations(settings: Settings, conn: Conn, chosen: list[Migration]) -> lint_mod.LintReport:
    """Lint ``chosen`` with the sizes of their tables on ``conn``'s database."""
    version = conn.info.parameter_status("server_version")
    with translated(conn, "reading the sizes of the tables to lint"):
        report = lint_mod.lint(
            chosen,
            conn,
            large_rows=settings.lint_large_table_rows,
            server_version=version.split()[0] if version else None,
            cache_dir=cache.folder(settings.root),
        )
    return apply_phases(report, chosen)
