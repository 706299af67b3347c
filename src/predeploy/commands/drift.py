"""One drift check for an env: the expected schema (a saved fingerprint, or a shadow built
from the applied migrations), compared with the live one.

Used by `predeploy drift`, by a protected env's migrate (before anything is changed), by the
nightly maintenance and by `status --drift`. The shadow applies the history's applied
migrations in the order they were applied, through the one executor, with the session the
live migrations had (Prisma's ``?schema=`` included).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from predeploy._util.files import read_text
from predeploy._util.log import FILE_ONLY
from predeploy.config.settings import Settings
from predeploy.db import target as db_target
from predeploy.db.connect import Conn, catalog_session
from predeploy.db.failures import translated
from predeploy.drift import reconcile, shadow
from predeploy.drift.fingerprint import Fingerprint
from predeploy.drift.report import DriftReport, detect
from predeploy.errors import CheckFailed, ConfigError, PredeployError
from predeploy.migrate import discovery, executor, history
from predeploy.migrate.discovery import Migration
from predeploy.migrate.executor import run_options
from predeploy.migrate.history import ensure_history, read_history

__all__ = ["DriftOptions", "Drifted", "check", "checked", "drift"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DriftOptions:
    save: Path | None = None  # write the expected schema's fingerprint here
    expected: Path | None = None  # compare with this saved fingerprint, not a shadow
    revert_sql: bool = False  # add the SQL that would bring live back to the migrations'
    adopt_sql: bool = False  # add a migration that would make the history match live


@dataclass(frozen=True)
class Drifted:
    """`predeploy drift`'s result: the report, with the revert or adopt steps asked for."""

    report: DriftReport
    options: DriftOptions = DriftOptions()

    @property
    def error(self) -> CheckFailed | None:
        r = self.report
        if not r.drifted:
            return None
        return CheckFailed(
            f"{len(r.differences)} difference(s) between {r.database} and "
            f"{r.expected_from}: see above; nothing was changed"
        )

    def fleet_outcome(self) -> str:
        """A target's word in a fleet's drift: drifted or no drift."""
        return "drifted" if self.report.drifted else "no drift"

    def fleet_detail(self) -> dict[str, Any]:
        return {"differences": len(self.report.differences)}

    def as_dict(self) -> dict[str, Any]:
        data = self.report.as_dict()
        if self.options.revert_sql:
            data["revert"] = [s.as_dict() for s in reconcile.revert_steps(self.report.differences)]
        if self.options.adopt_sql:
            data["adopt"] = [s.as_dict() for s in reconcile.adopt_steps(self.report.differences)]
        return data


def drift(settings: Settings, options: DriftOptions) -> Drifted:
    """The `predeploy drift` command. PREDEPLOY_DRIFT_EXPECTED stands in for --expected,
    unless a new fingerprint is being saved."""
    saved = None if options.save else settings.drift_expected
    report = check(settings, expected_file=options.expected or saved, save=options.save)
    return Drifted(report, options)


def _excluded(target: db_target.Target) -> list[tuple[str, str]]:
    """predeploy's own tables (history, audit), never reported."""
    table, audit_table = target.history, target.audit
    return [(table.schema, table.name), (audit_table.schema, audit_table.name)]


def check(
    settings: Settings, *, expected_file: Path | None = None, save: Path | None = None
) -> DriftReport:
    """Compare the live schema with the expected one; ``save`` writes the expected one."""
    target = db_target.of(settings)
    with catalog_session(target.direct, purpose="drift") as conn:
        if expected_file is not None:
            expected, origin = _read(expected_file), str(expected_file)
        else:
            expected, origin = _shadow(settings, target, conn)
        if save is not None:
            _write(save, expected)
        with translated(conn, "fingerprinting the live schema"):
            return detect(
                conn,
                expected=expected,
                exclude=_excluded(target),
                expected_from=origin,
                schema=target.search_path,
            )


# the shadows a fleet run built, by what they depend on: its targets at the same
# point of the history, on one server, in one schema, share one build
_BUILT: dict[tuple[Any, ...], tuple[Fingerprint, str]] = {}
_BUILDING: dict[tuple[Any, ...], threading.Lock] = {}  # one build per key at a time
_GUARD = threading.Lock()


def _shadow(settings: Settings, target: db_target.Target, conn: Conn) -> tuple[Fingerprint, str]:
    applied = _applied(settings, read_history(conn, target.history))
    if not settings.in_fleet:  # a single run checks once
        return _built(settings, target, applied)
    shadow_url = settings.shadow_database_url
    key = (
        target.url.address,
        shadow_url.address if shadow_url is not None else None,
        target.search_path,
        tuple(_excluded(target)),
        tuple((m.name, m.checksum) for m in applied),
    )
    with _GUARD:
        building = _BUILDING.setdefault(key, threading.Lock())
    with building:  # the same key waits for the first build; other keys build meanwhile
        if key not in _BUILT:
            _BUILT[key] = _built(settings, target, applied)
        return _BUILT[key]


def _built(
    settings: Settings, target: db_target.Target, applied: list[Migration]
) -> tuple[Fingerprint, str]:
    url, variable = target.url, target.direct.variable
    options = dataclasses.replace(
        run_options(target, lock_retries=settings.lock_retries), quiet=True
    )

    def build(shadow_conn: Conn) -> None:
        ensure_history(shadow_conn, options.table)
        with executor.Executor(shadow_conn, options) as run:
            run.apply_all(applied)

    built = shadow.expected(
        url,
        build=build,
        exclude=_excluded(target),
        extensions=shadow.required_extensions(applied),
        shadow_url=settings.shadow_database_url,
        embedded_pgdata=settings.pgdata,
        pg_bin_dir=settings.pg_bin_dir,
        timeout=settings.connect_timeout,
        variable=variable,
    )
    return built.fingerprint, built.origin


def _applied(settings: Settings, rows: list[history.HistoryRow]) -> list[Migration]:
    """The applied migrations, in the order they were applied; their folders must exist."""
    found = {m.name: m for m in discovery.discover(settings.migrations_dir)}
    applied = sorted((r for r in rows if r.applied), key=lambda r: (r.finished_at, r.started_at))
    missing = [r.migration_name for r in applied if r.migration_name not in found]
    if missing:
        raise shadow.DriftError(
            f"cannot build the expected schema: applied migration(s) missing on disk: "
            f"{', '.join(missing[:5])}; restore their folders, or compare with a saved "
            f"fingerprint (--expected FILE)"
        )
    return [found[r.migration_name] for r in applied]


def _read(path: Path) -> Fingerprint:
    return Fingerprint.from_json(read_text(path), source=str(path))


def _write(path: Path, expected: Fingerprint) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expected.to_json())
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


def checked(settings: Settings) -> tuple[DriftReport | None, str | None]:
    """The drift check of a run that has other work to do: (report, None), or (None, why it
    could not be checked). A check that cannot run (no shadow database, a saved fingerprint
    missing) never stops that work; the caller reports its step skipped, with why (the log
    file has it too, as ``drift_skipped``)."""
    try:
        return check(settings, expected_file=settings.drift_expected), None
    except PredeployError as exc:
        log.warning("drift_skipped", detail=exc.message, **{FILE_ONLY: True})
        return None, exc.message
