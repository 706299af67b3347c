"""`invoke maintenance`: the nightly cron job.

    lock → backup (reason cron) and retention → VACUUM (ANALYZE), when enabled
    → health checks (history: pending, failed, edited migrations; the app)

Runs hold their own advisory lock (not migrate's: a nightly backup must not make
a deploy wait), so overlapping cron runs never run twice: the second one stops at
once, exit 6, naming the holder. Every other step runs even when one before it
failed; the report says what needs a human.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import structlog

from predeploy._util import log as log_mod
from predeploy.backup import dump as backup
from predeploy.backup.dump import BackupResult
from predeploy.backup.progress import ProgressFn
from predeploy.commands import health
from predeploy.commands.run import Lifecycle
from predeploy.commands.steps import OnStep, Skip, Step
from predeploy.config.settings import Settings
from predeploy.db import target as db_target
from predeploy.db.connect import CATALOG, Conn, Limits, catalog_session, use_limits
from predeploy.db.failures import message_of
from predeploy.db.locks import MAINTENANCE_LOCK, advisory_lock
from predeploy.errors import CheckFailed, PredeployError

if TYPE_CHECKING:
    from predeploy.drift.report import DriftReport

__all__ = ["MAINTENANCE_LOCK", "MaintenanceReport", "maintain"]

log = structlog.get_logger(__name__)


@dataclass
class MaintenanceReport:
    env: str
    target: str | None = None  # a fleet's target: named in the commands it suggests
    steps: list[Step] = field(default_factory=list)
    backup: BackupResult | None = None
    vacuumed: bool = False
    health: health.HealthReport | None = None
    drift: DriftReport | None = None
    pruned_logs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth a look, not a failure
    errors: list[PredeployError] = field(default_factory=list)

    @property
    def needs_attention(self) -> list[str]:
        """What a human should look at: failed steps and failed health checks."""
        found = [str(e) for e in self.errors]
        if self.health is not None:
            found += [f"{c.name}: {c.detail}" for c in self.health.failed]
        if self.drift is not None and self.drift.drifted:
            found.append(
                f"drift: {len(self.drift.differences)} difference(s) made by hand "
                f"(predeploy drift --env {self.env}"
                + (f" --target {self.target})" if self.target else ")")
            )
        return found

    @property
    def error(self) -> PredeployError | None:
        """The run's exit as an error: None when all is well, else "needs attention" with
        ``exit_code`` (1, or the failed step's)."""
        if not self.exit_code:
            return None
        error = PredeployError(f"maintenance needs attention: {'; '.join(self.needs_attention)}")
        error.exit_code = self.exit_code
        return error

    def fleet_outcome(self) -> str:
        """A target's word in a fleet's maintenance: failed (a step failed: its exit
        code), needs attention (exit 1: a failed health check, drift) or done."""
        if self.errors:
            return "failed"
        return "needs attention" if self.needs_attention else "done"

    @property
    def exit_code(self) -> int:
        """The first failed step's code (6 lock, 4 backup, ...), else 1 if anything needs a
        human, else 0."""
        if self.errors:
            return self.errors[0].exit_code
        return 1 if self.needs_attention else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "outcome": "ok" if self.exit_code == 0 else "needs attention",
            "exit_code": self.exit_code,
            "needs_attention": self.needs_attention,
            "steps": [s.__dict__ for s in self.steps],
            "backup": self.backup.as_dict() if self.backup else None,
            "vacuumed": self.vacuumed,
            "health": self.health.as_dict() if self.health else None,
            "drift": self.drift.as_dict() if self.drift else None,
            "pruned_logs": [str(p) for p in self.pruned_logs],
            "notes": self.notes,
        }


def maintain(
    settings: Settings,
    *,
    progress: ProgressFn | None = None,
    on_step: OnStep | None = None,
) -> MaintenanceReport:
    """One maintenance run; the report's ``exit_code`` is the run's."""
    member = settings.member
    report = MaintenanceReport(env=settings.env, target=member.name if member else None)
    life = Lifecycle.start(settings, "maintenance", "", steps=report.steps, on_step=on_step)
    held = ExitStack()
    target = db_target.of(settings)
    try:
        with life.step("lock"):
            conn = held.enter_context(_locked(target))
    except PredeployError as exc:  # nothing else runs without the lock
        report.errors.append(exc)
        return report  # an overlapping run: the one that holds the lock reports
    try:
        with held:
            _locked_steps(settings, report, conn, target=target, life=life, progress=progress)
    except KeyboardInterrupt as exc:  # SIGINT/SIGTERM: the report and notification still go
        report.errors.insert(0, life.stopped(exc, "running maintenance"))
    report.notes += life.announce(
        report.as_dict(),
        changed=False,
        exit_code=report.exit_code,
        drift=len(report.drift.differences) if report.drift and report.drift.drifted else 0,
    )
    return report


@contextmanager
def _locked(target: db_target.Target) -> Iterator[Conn]:
    with (
        catalog_session(target.direct, purpose="maintenance") as conn,
        advisory_lock(conn, MAINTENANCE_LOCK, wait=0, purpose="maintenance"),
    ):
        yield conn


def _locked_steps(
    settings: Settings,
    report: MaintenanceReport,
    conn: Conn,
    *,
    target: db_target.Target,
    life: Lifecycle,
    progress: ProgressFn | None,
) -> None:
    step = life.step
    with _attempt(report), step("backup"):
        report.backup = backup.backup(target, settings.backup, reason="cron", progress=progress)
    if settings.maintenance_vacuum:
        with _attempt(report), step("vacuum"):
            _vacuum(conn)
            report.vacuumed = True
    else:
        life.skip("vacuum", detail="PREDEPLOY_MAINTENANCE_VACUUM is off")
    with step("health"):
        report.health = health.run(settings)
    with _attempt(report), step("drift"):  # the whole check's duration, shadow build included
        from predeploy.commands.drift import checked  # noqa: PLC0415 (nightly only)

        report.drift, problem = checked(settings)
        if problem is not None:  # said once, by the step: "- drift  (skipped: ...)", not ✓
            raise Skip(f"skipped: {problem}")
    with _attempt(report), step("logs"):
        report.pruned_logs = log_mod.prune(settings.log_dir, settings.log_keep_days)


def _vacuum(conn: Conn) -> None:
    """VACUUM (ANALYZE) of every table it can lock at once; a locked table is skipped, and
    the nightly vacuum has no statement timeout."""
    use_limits(conn, Limits(lock_timeout=CATALOG.lock_timeout, statement_timeout=0))
    try:
        conn.execute("VACUUM (ANALYZE, SKIP_LOCKED)")
    except psycopg.Error as exc:
        detail = message_of(exc)
        raise CheckFailed(f"VACUUM (ANALYZE) failed: {detail}") from None
    finally:
        use_limits(conn, CATALOG)


@contextmanager
def _attempt(report: MaintenanceReport) -> Iterator[None]:
    """Record a failed step's error and go on with the next step."""
    try:
        yield
    except PredeployError as exc:
        report.errors.append(exc)
