"""`invoke health`: is the database, its history and the application healthy?

Each check reports its name, ok, one line of detail and its duration. The
database checks always run; the HTTP check runs when PREDEPLOY_HEALTHCHECK_URL is set, the
pm2 check when PREDEPLOY_PM2_APP is set. A check that cannot run (the database is down,
pm2 is missing) is a failed check, not an error: the report is the interface.
"""

from __future__ import annotations

import base64
import itertools
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from psycopg import errors as pg_errors

from predeploy._util import units
from predeploy._util.log import REPORTED
from predeploy._util.loopback import is_loopback
from predeploy._util.poll import poll
from predeploy._util.redact import shown_url
from predeploy.config.hosts import read_hosts
from predeploy.config.settings import Settings
from predeploy.db import target as db_target
from predeploy.db.catalog import size_expression
from predeploy.db.connect import Conn, catalog_session, round_trip_ms
from predeploy.db.failures import translated
from predeploy.errors import HealthCheckFailed, PredeployError
from predeploy.integrations.pm2 import Pm2
from predeploy.migrate import discovery as migrations
from predeploy.migrate import history
from predeploy.migrate.history import read_history
from predeploy.migrate.status import compare, for_health

__all__ = ["Check", "HealthReport", "check_http", "check_pm2", "log_checks", "run"]

log = structlog.get_logger(__name__)
_TABLES = 5
_LARGEST = """
SELECT s.schemaname, s.relname, {size}, s.n_live_tup
FROM pg_stat_user_tables s
ORDER BY 3 DESC, s.relname
LIMIT %s
"""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "seconds": round(self.seconds, 4),
            **({"data": self.data} if self.data else {}),
        }


@dataclass(frozen=True)
class HealthReport:
    env: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        """One line naming each failed check and why."""
        return "; ".join(f"{c.name}: {c.detail}" for c in self.failed) or "all checks pass"

    @property
    def error(self) -> HealthCheckFailed | None:
        return None if self.ok else HealthCheckFailed(f"unhealthy: {self.summary()}")

    def fleet_outcome(self) -> str:
        """A target's word in a fleet's health: healthy or unhealthy (exit 7)."""
        return "healthy" if self.ok else "unhealthy"

    def as_dict(self) -> dict[str, Any]:
        return {"env": self.env, "ok": self.ok, "checks": [c.as_dict() for c in self.checks]}


def run(
    settings: Settings,
    *,
    pm2: Pm2 | None = None,
    quiet: bool = False,
    post_deploy_pending: bool = False,
    app_only: bool = False,
    host_checks: Callable[[], list[Check]] | None = None,
) -> HealthReport:
    """Every configured check, in order; never raises for a failing check.

    ``quiet`` leaves the logging to the caller (deploy polls until the checks pass);
    ``post_deploy_pending`` accepts pending post-deploy migrations (a deploy between its
    reload and its post-deploy phase); ``app_only``: the application's checks alone (a
    fleet's deploy: each tenant's database had its own checks in its phases);
    ``host_checks``: the app hosts' checks (a deploy's sessions), else, when app hosts
    serve the env (predeploy.fleet.toml), one check per host, all at once: they replace
    the check of this machine's pm2 (the app runs on the hosts).
    """
    checks: list[Check] = []
    if not app_only:
        checks += _database_checks(settings, post_deploy_pending)
    if settings.healthcheck_url:
        checks.append(
            check_http(
                settings.healthcheck_url,
                timeout=settings.healthcheck_timeout,
                retries=settings.healthcheck_retries,
            )
        )
    rollout = None if host_checks or settings.in_fleet else read_hosts(settings.root, settings.env)
    if host_checks is not None:
        checks += host_checks()
    elif rollout is not None:
        from predeploy.commands import host_checks as on_hosts  # noqa: PLC0415 (Fabric, lazily)

        checks += on_hosts.check_all(settings, rollout)
    elif settings.pm2_app:
        checks.append(check_pm2(settings, pm2))
    report = HealthReport(settings.env, checks)
    if not quiet:
        log_checks(report)
    return report


def log_checks(report: HealthReport, *, failed_level: str = "warning") -> None:
    """One ``health_check`` event per check: info when it passed, ``failed_level`` if not."""
    for check in report.checks:
        emit = log.info if check.ok else getattr(log, failed_level)
        emit("health_check", check=check.name, ok=check.ok, detail=check.detail, **{REPORTED: True})


def _database_checks(settings: Settings, post_deploy_pending: bool = False) -> list[Check]:
    checks: list[Check] = []
    started = time.perf_counter()
    target = db_target.of(settings)
    try:
        conn = catalog_session(target.app, purpose="health")
    except PredeployError as exc:
        seconds = time.perf_counter() - started
        return [
            Check("database", False, exc.message, seconds),
            Check("history", False, "not checked: the database is unreachable", 0.0),
            Check("tables", False, "not checked: the database is unreachable", 0.0),
        ]
    with conn:
        latency = round_trip_ms(conn)
        checks.append(
            Check(
                "database",
                True,
                f"{conn.info.dbname} reachable, {latency:.2f} ms round trip",
                time.perf_counter() - started,
                {"latency_ms": round(latency, 3)},
            )
        )
        checks.append(
            _timed(
                "history",
                conn,
                lambda: _history(settings, target.history, conn, post_deploy_pending),
            )
        )
        checks.append(_timed("tables", conn, lambda: _tables(conn)))
    return checks


def _timed(name: str, conn: Conn, probe: Callable[[], tuple[bool, str, dict[str, Any]]]) -> Check:
    started = time.perf_counter()
    try:
        with translated(conn, f"the {name} check"):
            ok, detail, data = probe()
    except PredeployError as exc:
        ok, detail, data = False, exc.message, {}
    return Check(name, ok, detail, time.perf_counter() - started, data)


def _history(
    settings: Settings, table: history.Table, conn: Conn, post_deploy_pending: bool = False
) -> tuple[bool, str, dict[str, Any]]:
    rows = read_history(conn, table)
    status = compare(migrations.discover(settings.migrations_dir), rows)
    waiting = (
        tuple(m for m in status.pending if m.phase == "post-deploy") if post_deploy_pending else ()
    )
    counts: dict[str, int] = dict(status.counts())
    counts["pending"] -= len(waiting)
    problems = for_health(status, waiting=waiting)
    missing = [e.name for e in status.having("missing")]
    note = f"; warning: {', '.join(missing)} missing on disk" if missing else ""
    if not problems:
        return (
            True,
            f"{counts.get('applied', 0)} applied, nothing pending, failed or edited{note}",
            counts,
        )
    listed = ", ".join(f"{n} {state}" for state, n in problems.items())
    names = ", ".join(
        e.name for e in status.entries if e.state in problems and e.migration not in waiting
    )
    return False, f"{listed}: {names}{note}", counts


def _tables(conn: Conn) -> tuple[bool, str, dict[str, Any]]:
    """The largest tables; sizes estimated (no lock) when one of them is locked."""
    try:
        rows = _largest(conn, exact=True)
        estimated = False
    except pg_errors.LockNotAvailable:
        rows, estimated = _largest(conn, exact=False), True
    tables: list[dict[str, Any]] = [
        {"table": f"{schema}.{name}", "bytes": int(size), "live_rows": int(live)}
        for schema, name, size, live in rows
    ]
    if not tables:
        return True, "no user tables", {"largest": []}
    detail = ", ".join(
        f"{t['table']} {units.size(t['bytes'])} ~{t['live_rows']:,} rows" for t in tables
    )
    note = " (sizes estimated: a table is locked)" if estimated else ""
    return True, f"largest: {detail}{note}", {"largest": tables, "estimated": estimated}


def _largest(conn: Conn, *, exact: bool) -> list[tuple[Any, ...]]:
    query = _LARGEST.replace("{size}", size_expression("s.relid", exact=exact))
    return conn.execute(query, (_TABLES,)).fetchall()


def check_http(url: str, *, timeout: float, retries: int, pause: float = 1.0) -> Check:
    """GET ``url`` expecting a 2xx within ``timeout``, up to ``retries`` tries, ``pause``
    apart (``poll``). Its deadline, ``retries`` * (``timeout`` + ``pause``), only matters
    when tries outlast their timeout (it bounds each socket read, not a whole answer a slow
    server drips): then no new try starts once it has passed.

    Credentials in the URL (``http://user:password@host/health``) are sent as Basic auth
    and never shown, nor are its query values (``?key=TOKEN``); a loopback URL never goes
    through http_proxy.
    """
    shown = shown_url(url)
    request, opener = _request(url)
    started = time.perf_counter()
    tries = itertools.count(1)
    last = poll(
        lambda: _get(opener, request, timeout, next(tries)),
        retries * (timeout + pause),
        pause=pause,
        done=lambda tried: tried.ok or tried.attempt >= retries,
    )
    seconds = time.perf_counter() - started
    if last.ok:
        return Check(
            "http",
            True,
            f"GET {shown}: {last.code} in {last.ms:.0f} ms",
            seconds,
            {"status": last.code, "attempts": last.attempt},
        )
    return Check(
        "http",
        False,
        f"GET {shown}: {last.reason} after {last.attempt} tries (timeout {timeout:g}s each)",
        seconds,
        {"attempts": last.attempt},
    )


@dataclass(frozen=True)
class _Tried:
    """One GET of the health URL: its status (0: no answer), why it failed, how long."""

    attempt: int
    code: int
    reason: str
    ms: float

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


def _get(
    opener: urllib.request.OpenerDirector,
    request: urllib.request.Request,
    timeout: float,
    attempt: int,
) -> _Tried:
    sent = time.perf_counter()
    reason = ""
    try:
        with opener.open(request, timeout=timeout) as response:
            code = response.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    except (urllib.error.URLError, OSError) as exc:
        code = 0
        why = getattr(exc, "reason", exc)
        reason = "timed out" if isinstance(why, TimeoutError) else str(why)
    if code:
        reason = f"HTTP {code}"
    return _Tried(attempt, code, reason, (time.perf_counter() - sent) * 1000)


def _request(url: str) -> tuple[urllib.request.Request, urllib.request.OpenerDirector]:
    """The GET without the credentials in its URL (they go in an Authorization header that
    a redirect does not carry), and an opener that skips proxies for loopback hosts."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = host if ":" not in host else f"[{host}]"
    netloc += f":{parts.port}" if parts.port else ""
    bare = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    request = urllib.request.Request(bare)  # noqa: S310 (http(s) only: checked in config)
    if parts.username is not None or parts.password is not None:
        user = urllib.parse.unquote(parts.username or "")
        secret = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{secret}".encode()).decode()
        request.add_unredirected_header("Authorization", f"Basic {token}")
    handlers: list[urllib.request.BaseHandler] = []
    if is_loopback(host):
        handlers.append(urllib.request.ProxyHandler({}))
    return request, urllib.request.build_opener(*handlers)


def check_pm2(settings: Settings, pm2: Pm2 | None = None) -> Check:
    """Every pm2 process of PREDEPLOY_PM2_APP online, with restart counts."""
    started = time.perf_counter()
    try:
        pm2 = pm2 or Pm2.for_settings(settings.pm2)
        if not pm2.running():  # pm2 would start a daemon of its own: the check is not run
            detail = f"not checked: {pm2.message_no_daemon()}"
            return Check("pm2", False, detail, time.perf_counter() - started, {"skipped": True})
        processes = pm2.processes()
    except PredeployError as exc:
        return Check("pm2", False, exc.message, time.perf_counter() - started)
    seconds = time.perf_counter() - started
    data = {"processes": [p.as_dict() for p in processes]}
    if not processes:
        detail = f"pm2 has no process named {settings.pm2_app} ({pm2.home()})"
        return Check("pm2", False, detail, seconds, data)
    down = [p for p in processes if p.status != "online"]
    restarts = ", ".join(str(p.restarts) for p in processes)
    if down:
        states = ", ".join(f"{p.name}#{p.pm_id} {p.status}" for p in down)
        return Check(
            "pm2", False, f"{len(down)} of {len(processes)} not online: {states}", seconds, data
        )
    return Check(
        "pm2",
        True,
        f"{settings.pm2_app}: {len(processes)} online (restarts {restarts})",
        seconds,
        data,
    )
