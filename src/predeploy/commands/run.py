"""One run of a verb that changes a database, from its first step to its end.

Every verb that changes (or guards) a database (migrate, deploy, rollback, restore,
maintenance) lives through the same ``Lifecycle``:

    start (its audit row's fields) → steps, each with its outcome and duration
    → the error it stopped on: a PredeployError, or SIGINT/SIGTERM/SIGHUP mapped to one
    → the runbook (what it changed, how back) → its audit row → its notification

The outcome strings of the audit table are written here and nowhere else (``outcome``);
a failure to write the row or to notify is logged, never raised over the run's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from predeploy.commands.steps import OnStep, Step, Stepper, add, note, skip, stepper
from predeploy.config.settings import Settings
from predeploy.db import audit
from predeploy.db import target as db_target
from predeploy.db.connect import Conn, catalog_session
from predeploy.db.failures import translated
from predeploy.errors import INTERRUPTED_CODES, PredeployError, interrupted

if TYPE_CHECKING:
    from predeploy.commands.runbook import Runbook

__all__ = ["DONE", "Lifecycle", "outcome", "where"]

log = structlog.get_logger(__name__)

# the outcome of a run that went well, by command (a migrate with nothing to apply says so)
DONE = {
    "migrate": "applied",
    "deploy": "deployed",
    "rollback": "rolled back",
    "restore": "restored",
}
NOTHING_PENDING = "nothing pending"


def where(command: str, steps: Sequence[Step]) -> str | None:
    """The step a run stopped in: the failed (or interrupted) one; else a migrate names the
    gate between steps by the last one done, a deploy its migrate (whose own row says
    where); rollback and restore have no steps."""
    failed = next((s.name for s in steps if s.outcome in ("failed", "interrupted")), None)
    if failed is not None:
        return failed
    if command == "migrate":
        return f"after {steps[-1].name}" if steps else "before the first step"
    if command == "deploy":
        return "migrate"
    return None


def outcome(
    command: str, error: PredeployError | None, *, where: str | None = None, changed: bool = True
) -> str:
    """The audit row's outcome: ``DONE[command]`` (``nothing pending``: a migrate that
    changed nothing), ``interrupted``, ``applied: stopped before <it>`` (a run that applied
    what the phases' order let it), ``refused: <gate>`` (the gate that said no:
    ``confirmation (no terminal)``, ``--no-backup``), else ``failed`` (``failed: <where>``).
    A deploy's row names only its failed step: its migrate's row says why."""
    if error is None:
        return DONE[command] if changed else NOTHING_PENDING
    if error.exit_code in INTERRUPTED_CODES:
        return "interrupted"
    if command != "deploy":
        if error.stopped_before:
            return f"applied: stopped before {error.stopped_before}"
        if error.refused_by:
            return f"refused: {error.refused_by}"
    return f"failed: {where}" if where else "failed"


@dataclass
class Lifecycle:
    """One run: its steps, the error it stopped on, its runbook, its row and notification."""

    settings: Settings
    trail: audit.Run  # the audit row's fields, filled in as the run goes
    steps: list[Step] = field(default_factory=list)
    on_step: OnStep | None = None
    error: PredeployError | None = None
    runbook: Runbook | None = None
    protected: bool | None = None  # the policy the run had (its database may raise the env's)

    @classmethod
    def start(
        cls,
        settings: Settings,
        command: str,
        run_id: str,
        *,
        steps: list[Step] | None = None,
        on_step: OnStep | None = None,
        **fields: Any,
    ) -> Lifecycle:
        """The run of ``command``; ``steps``: the report's list its steps are recorded in."""
        trail = audit.Run(
            run_id=run_id,
            command=command,
            env=settings.env,
            root=settings.root,
            scrubber=settings.scrubber,  # the row is masked like every other sink
            **fields,
        )
        return cls(settings, trail, [] if steps is None else steps, on_step)

    @property
    def command(self) -> str:
        return self.trail.command

    @property
    def run_id(self) -> str:
        return self.trail.run_id

    @property
    def step(self) -> Stepper:
        """``with run.step("name"):`` records the block as one of the run's steps."""
        return stepper(self.steps, self.on_step)

    def skip(self, *names: str, detail: str, seconds: float = 0.0) -> None:
        skip(self.steps, self.on_step, *names, detail=detail, seconds=seconds)

    def add(self, done: Step) -> None:
        """Record a step that ran elsewhere (in a worker thread), as it ended."""
        add(self.steps, self.on_step, done)

    def note(self, name: str, detail: str, seconds: float = 0.0) -> None:
        note(self.steps, self.on_step, name, detail, seconds)

    @property
    def exit_code(self) -> int:
        return self.error.exit_code if self.error is not None else 0

    @staticmethod
    def stopped(exc: PredeployError | KeyboardInterrupt, doing: str) -> PredeployError:
        """The error a run stopped on: SIGINT or SIGTERM/SIGHUP (a KeyboardInterrupt)
        becomes the Interrupted error of its signal, ``while <doing>``."""
        return exc if isinstance(exc, PredeployError) else interrupted(exc, doing)

    @contextmanager
    def ending(self, doing: Callable[[], str]) -> Iterator[None]:
        """The block's error (or interrupt, mapped) is the run's ``error``, not raised: the
        run still writes its runbook, row and notification."""
        try:
            yield
        except (PredeployError, KeyboardInterrupt) as exc:
            self.error = self.stopped(exc, doing())

    @contextmanager
    def recorded(self, doing: str, conn: Conn | None = None) -> Iterator[None]:
        """A block that ends the run when it stops: its row (``failed``, ``refused: ...``,
        ``interrupted``) is written, then the error (the mapped interrupt) is raised."""
        try:
            yield
        except (PredeployError, KeyboardInterrupt) as exc:
            self.error = self.stopped(exc, doing)
            self.record(conn=conn, detail=self.error.message)
            raise

    def outcome(self, *, changed: bool = True) -> str:
        return outcome(
            self.command, self.error, where=where(self.command, self.steps), changed=changed
        )

    def record(
        self,
        text: str | None = None,
        *,
        conn: Conn | None = None,
        detail: str | None = None,
        changed: bool = True,
    ) -> None:
        """The run's audit row (``text``: its outcome, else ``outcome()``), on ``conn`` (the
        run's own session) or a session of its own; a failure to write it is only logged."""
        said = self.outcome(changed=changed) if text is None else text
        target = db_target.of(self.settings)
        table = target.audit
        if conn is not None:
            audit.record(conn, table, self.trail, said, detail)
            return
        try:
            with (
                catalog_session(target.direct, purpose="audit") as own,
                translated(own, "writing the audit row"),
            ):
                audit.record(own, table, self.trail, said, detail)
        except PredeployError as exc:
            log.warning("audit_not_recorded", detail=str(exc))

    def hand_off(self, build: Callable[[], Runbook]) -> Runbook:
        """The runbook of what the run changed (or why it did not), kept with the run."""
        self.runbook = build()
        return self.runbook

    def announce(
        self,
        report: Mapping[str, Any],
        *,
        changed: bool,
        exit_code: int | None = None,
        drift: int = 0,
    ) -> list[str]:
        """The run's notification (after its row); the warnings of failed deliveries. A
        fleet's target sends none: the fleet run sends one for all its targets."""
        if self.settings.in_fleet:
            return []
        from predeploy.commands.announce import announce  # noqa: PLC0415 (notifications on)

        return announce(
            self.settings,
            self.command,
            report,
            changed=changed,
            exit_code=self.exit_code if exit_code is None else exit_code,
            drift=drift,
            protected=self.protected,
        )

    def announce_logged(self, report: Mapping[str, Any], *, changed: bool) -> None:
        """The notification of a verb whose result has no warnings list: they are logged."""
        for warning in self.announce(report, changed=changed):
            log.warning("notification_warning", detail=warning)
