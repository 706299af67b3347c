"""`predeploy status`: where each migration stands, the last runs, and with ``check`` an
exit 1 when the history needs attention (``predeploy.migrate.status.for_check``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from predeploy.config.settings import Settings
from predeploy.db import audit
from predeploy.db import target as db_target
from predeploy.db.connect import Conn, catalog_session
from predeploy.db.failures import translated
from predeploy.errors import CheckFailed, PredeployError
from predeploy.migrate import discovery
from predeploy.migrate.history import Table, read_history
from predeploy.migrate.status import Status, compare, for_check

if TYPE_CHECKING:
    from predeploy.drift.report import DriftReport

__all__ = ["StatusOptions", "StatusReport", "current", "status"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StatusOptions:
    check: bool = False  # exit 1 unless the history is clean
    drift: bool = False  # also compare the live schema with the applied migrations


@dataclass(frozen=True)
class StatusReport:
    """The status, the newest audit rows, and the drift report when asked for."""

    env: str
    status: Status
    runs: list[dict[str, Any]]
    drift: DriftReport | None = None
    check: bool = False

    def problems(self) -> list[str]:
        """ "2 pending", "1 drifted": what `status --check` fails on."""
        found = [f"{n} {state}" for state, n in for_check(self.status).items()]
        if self.drift is not None and self.drift.drifted:
            found.append(f"{len(self.drift.differences)} drifted")
        return found

    def fleet_outcome(self) -> str:
        """This tenant's word in a fleet's status: needs attention (a failed, edited or
        missing migration), drifted, behind (pending only) or up to date."""
        states = for_check(self.status)
        if any(state != "pending" for state in states):
            return "needs attention"
        if self.drift is not None and self.drift.drifted:
            return "drifted"
        return "behind" if states else "up to date"

    def fleet_detail(self) -> dict[str, Any]:
        """This tenant's counts in a fleet's status table."""
        return {"counts": self.status.counts()}

    @property
    def error(self) -> CheckFailed | None:
        problems = self.problems() if self.check else []
        if not problems:
            return None
        return CheckFailed("migrations need attention: " + ", ".join(problems))

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "env": self.env,
            "up_to_date": self.status.up_to_date,
            "counts": self.status.counts(),
            "migrations": [e.as_dict() for e in self.status.entries],
            "last_runs": self.runs,
        }
        if self.drift is not None:
            data["drift"] = self.drift.as_dict()
        return data


def status(settings: Settings, options: StatusOptions | None = None) -> StatusReport:
    """The status report; with ``options.drift``, the drift check too."""
    options = options or StatusOptions()
    found, runs = _status_and_runs(settings)
    drift = None
    if options.drift:
        from predeploy.commands.drift import check  # noqa: PLC0415 (drift's machinery)

        drift = check(settings, expected_file=settings.drift_expected)
    return StatusReport(settings.env, found, runs, drift, options.check)


def _status_and_runs(settings: Settings, limit: int = 5) -> tuple[Status, list[dict[str, Any]]]:
    """The status and the newest audit rows, read in one session."""
    found = discovery.discover(settings.migrations_dir)
    target = db_target.of(settings)
    with catalog_session(target.direct, purpose="status") as conn:
        rows = read_history(conn, target.history)
        runs = _last_runs(conn, target.audit, limit)
    return compare(found, rows), runs


def current(settings: Settings) -> Status:
    """Compare the migrations on disk with the history table (read-only)."""
    found = discovery.discover(settings.migrations_dir)
    target = db_target.of(settings)
    with catalog_session(target.direct, purpose="status") as conn:
        rows = read_history(conn, target.history)
    return compare(found, rows)


def _last_runs(conn: Conn, table: Table, limit: int) -> list[dict[str, Any]]:
    try:
        with translated(conn, f"reading the audit table ({table})"):
            return audit.last_runs(conn, table, limit)
    except PredeployError as exc:  # the status itself stands without the trail
        log.warning("audit_not_read", detail=exc.message)
        return []
