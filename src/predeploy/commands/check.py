"""`invoke check`: can we reach the database, what is it, which pg_dump fits it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import structlog

from predeploy.config.hosts import Rollout, read_hosts
from predeploy.config.settings import Settings
from predeploy.db import protection
from predeploy.db import target as db_target
from predeploy.db.connect import catalog_session, round_trip_ms
from predeploy.programs import pgbin

__all__ = ["CheckResult", "check"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CheckResult:
    """What `invoke check` found about the target database."""

    env: str
    url: str
    embedded: bool
    server_version: str
    server_major: int
    database: str
    user: str
    latency_ms: float
    in_recovery: bool
    pg_dump: pgbin.PgProgram | None
    pg_restore: pgbin.PgProgram | None
    tools_warning: str | None
    server: str = ""  # host:port, the socket, or the embedded server
    policy: str = ""  # the policy a run that changes this database gets, and why
    protected: bool = False
    deployed_as: str | None = None  # the protected env that changed it last
    hosts: str | None = None  # the app hosts of predeploy.fleet.toml serving the env, read

    def fleet_outcome(self) -> str:
        """A target's word in a fleet's check: reachable (a failure to connect is the
        fleet's ``failed``, exit 3)."""
        return "reachable"

    def fleet_detail(self) -> dict[str, Any]:
        return {"server_version": self.server_version, "latency_ms": self.latency_ms}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("pg_dump", "pg_restore"):
            program = getattr(self, key)
            data[key] = (
                None
                if program is None
                else {
                    "path": str(program.path),
                    "version": program.version,
                    "source": program.source,
                }
            )
        return data


def check(settings: Settings) -> CheckResult:
    """Connect to the env's database and report what a deploy needs to know (and the app
    hosts a deploy would reload, as the fleet file names them: read, not reached)."""
    rollout = None if settings.in_fleet else read_hosts(settings.root, settings.env)
    target = db_target.of(settings)
    url = target.url
    with catalog_session(target.direct, purpose="check") as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('server_version_num'),"
            " current_database(), current_user, pg_is_in_recovery()"
        ).fetchone()
        assert row is not None  # noqa: S101 (a SELECT without FROM returns one row)
        version, version_num, database, user, in_recovery = row
        latency_ms = round_trip_ms(conn)
        place = protection.place_of(target, conn)
    policy = protection.decide(target, place)
    server_major = int(str(version_num)) // 10000
    tools = pgbin.select(settings.pg_bin_dir, server_major)
    result = CheckResult(
        env=settings.env,
        url=url.redacted(),
        embedded=settings.uses_embedded,
        server_version=str(version),
        server_major=server_major,
        database=str(database),
        user=str(user),
        latency_ms=round(latency_ms, 3),
        in_recovery=bool(in_recovery),
        pg_dump=tools.pg_dump,
        pg_restore=tools.pg_restore,
        tools_warning=tools.warning,
        server=target.server,
        policy=policy.summary,
        protected=policy.protected,
        deployed_as=policy.deployed_as,
        hosts=_hosts(rollout) if rollout is not None else None,
    )
    log.info(
        "check_ok",
        database=result.database,
        server_version=result.server_version,
        latency_ms=result.latency_ms,
        in_recovery=result.in_recovery,
    )
    if tools.warning:
        log.warning("pg_dump_mismatch", detail=tools.warning)
    return result


def _hosts(rollout: Rollout) -> str:
    names = ", ".join(h.name for h in rollout.hosts)
    return (
        f"{len(rollout.hosts)} ({names}), waves of {rollout.serial}, max_fail "
        f"{rollout.max_fail}: predeploy health checks them over SSH"
    )
