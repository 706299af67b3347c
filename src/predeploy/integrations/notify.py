"""Notifications: tell the team what a run did, through apprise.

An ``Event`` says what a run did (plain data, built after its audit row);
``should_notify`` decides from PREDEPLOY_NOTIFY_ON whether it deserves a message;
``send`` delivers it to every PREDEPLOY_NOTIFY_URLS entry and returns one
``Delivery`` per URL. Sending never raises and never takes longer than
PREDEPLOY_NOTIFY_TIMEOUT: a failed delivery is a warning for the report, never a
different exit code. Every message is scrubbed: known passwords (plain and
percent-encoded), URL passwords and SQL bodies never leave the machine.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from predeploy._util.operator import operator
from predeploy._util.redact import Scrubber
from predeploy.errors import ConfigError
from predeploy.integrations._notify_send import Delivery, Message, deliver

__all__ = [
    "DEFAULT_TRIGGERS",
    "OUTCOMES",
    "TRIGGERS",
    "AppliedMigration",
    "Delivery",
    "Event",
    "Message",
    "NotifyConfig",
    "event_from_report",
    "log_deliveries",
    "message",
    "parse_triggers",
    "send",
    "should_notify",
    "test",
    "warnings",
]

log = structlog.get_logger(__name__)

OUTCOMES = ("ok", "failed", "interrupted", "needs attention")
TRIGGERS = ("failure", "prod-change", "success", "drift", "all")
DEFAULT_TRIGGERS = frozenset({"failure", "prod-change"})

_MARK = {"ok": "✓", "failed": "✗", "interrupted": "✗", "needs attention": "⚠"}
_KIND = {"ok": "success", "failed": "failure", "interrupted": "failure"}
_RUNBOOK_LINES = 16  # a longer runbook is named by its path, never cut
_LISTED = 5


@dataclass(frozen=True)
class NotifyConfig:
    """PREDEPLOY_NOTIFY_URLS, _ON and _TIMEOUT, and every password known to the run."""

    urls: tuple[str, ...] = field(default=(), repr=False)  # apprise URLs hold tokens
    on: frozenset[str] = DEFAULT_TRIGGERS
    timeout: float = 5.0
    secrets: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class AppliedMigration:
    name: str
    seconds: float


@dataclass(frozen=True)
class Event:
    """What one run did, for the team: the facts of its report and audit row."""

    command: str  # migrate, rollback, restore, deploy, maintenance, notify-test
    env: str
    outcome: str  # one of OUTCOMES
    protected: bool = False  # the env's policy protects it (prod-like)
    database: str = ""  # the redacted URL
    changed: bool = False  # did the run change the database
    applied: tuple[AppliedMigration, ...] = ()
    backup: str | None = None  # the backup file this run made
    health_ok: bool | None = None  # None: no health check ran
    health_failed: tuple[str, ...] = ()  # "name: detail" of each failed check
    error: str | None = None  # the error line
    runbook: tuple[str, ...] = ()  # the runbook's lines (# comments included)
    runbook_path: str | None = None  # where the run wrote it, on ``host``
    drift: int = 0  # differences found between the live schema and the migrations
    drift_skipped: str | None = None  # why the drift check could not run ("skipped: ...")
    # a deploy over app hosts: (name, outcome, release) each
    hosts: tuple[tuple[str, str, str], ...] = ()
    report: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    operator: str = field(default_factory=operator)
    host: str = field(default_factory=socket.gethostname)
    git_revision: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is not one of {', '.join(OUTCOMES)}")

    def as_dict(self) -> dict[str, Any]:
        """The event's own fields (the run's report apart)."""
        return {
            "command": self.command,
            "env": self.env,
            "protected": self.protected,
            "database": self.database,
            "operator": self.operator,
            "host": self.host,
            "git_revision": self.git_revision,
            "outcome": self.outcome,
            "changed": self.changed,
            "applied": [{"name": a.name, "seconds": round(a.seconds, 3)} for a in self.applied],
            "backup": self.backup,
            "health": {"ok": self.health_ok, "failed": list(self.health_failed)},
            "error": self.error,
            "runbook": list(self.runbook),
            "runbook_path": self.runbook_path,
            "drift": self.drift,
            "drift_skipped": self.drift_skipped,
            **({"hosts": self._hosts()} if self.hosts else {}),
        }

    def _hosts(self) -> list[dict[str, str]]:
        return [
            {"name": name, "outcome": said, "release": release}
            for name, said, release in self.hosts
        ]


def parse_triggers(text: str, variable: str = "PREDEPLOY_NOTIFY_ON") -> frozenset[str]:
    """PREDEPLOY_NOTIFY_ON's comma-separated words; empty means the default."""
    words = frozenset(w.strip().lower() for w in text.split(",") if w.strip())
    unknown = sorted(words - set(TRIGGERS))
    if unknown:
        raise ConfigError(
            f"{variable} has unknown {', '.join(unknown)}: use {', '.join(TRIGGERS)}"
            f" (comma-separated; default {','.join(sorted(DEFAULT_TRIGGERS))})"
        )
    return words or DEFAULT_TRIGGERS


def should_notify(event: Event, notify_on: Iterable[str]) -> bool:
    """Does PREDEPLOY_NOTIFY_ON ask for a message about this event?"""
    on = frozenset(notify_on)
    return (
        "all" in on
        or ("failure" in on and event.outcome != "ok")
        or ("success" in on and event.outcome == "ok")
        or ("prod-change" in on and event.protected and event.changed)
        or ("drift" in on and event.drift > 0)
    )


def event_from_report(
    command: str,
    report: Mapping[str, Any],
    *,
    env: str,
    protected: bool,
    database: str,
    changed: bool,
    outcome: str | None = None,
    git_revision: str | None = None,
    drift: int = 0,
) -> Event:
    """The event of a run from its ``--json`` report dict (migrate, deploy, maintenance...).

    Read from the report: applied (also a deploy's ``migrate.applied``, a rollback's
    ``rolled_back``), backup path, health checks, error (or ``needs_attention``),
    runbook and outcome; ``outcome`` overrides it (``interrupted``).
    """
    nested: Mapping[str, Any] = _mapping(report.get("migrate")) or {}
    post: Mapping[str, Any] = _mapping(report.get("post_deploy")) or {}  # a deploy's 2nd phase
    health_ok, health_failed = _health(_mapping(report.get("health")))
    return Event(
        command=command,
        env=env,
        outcome=outcome or _outcome(report),
        protected=protected,
        database=database,
        changed=changed,
        applied=_applied(nested) + _applied(post) + _applied(report),
        backup=_backup_path(report.get("backup"))
        or _backup_path(nested.get("backup"))
        or _backup_path(post.get("backup")),
        health_ok=health_ok,
        health_failed=health_failed,
        error=report.get("error") or "; ".join(report.get("needs_attention") or []) or None,
        runbook=tuple(str(line) for line in report.get("runbook") or []),
        runbook_path=str(report.get("runbook_path") or "") or None,
        report=report,
        git_revision=git_revision,
        drift=drift,
        drift_skipped=_drift_skipped(report),
        hosts=tuple(
            (str(h.get("name")), str(h.get("outcome")), str(h.get("release") or ""))
            for h in report.get("hosts") or []
            if isinstance(h, Mapping)
        ),
    )


def _drift_skipped(report: Mapping[str, Any]) -> str | None:
    """The detail of a skipped drift step (a deploy's are in its migrate and post runs)."""
    runs = [report, _mapping(report.get("migrate")) or {}, _mapping(report.get("post")) or {}]
    for run in runs:
        for step in run.get("steps") or []:
            named = isinstance(step, Mapping) and step.get("name") == "drift"
            if named and step.get("outcome") == "skipped":
                return str(step.get("detail") or "skipped")
    return None


def _applied(report: Mapping[str, Any]) -> tuple[AppliedMigration, ...]:
    return tuple(
        AppliedMigration(str(a.get("name")), float(a.get("seconds") or 0.0))
        for key in ("applied", "rolled_back")
        for a in report.get(key) or []
        if isinstance(a, Mapping)
    )


def _health(health: Mapping[str, Any] | None) -> tuple[bool | None, tuple[str, ...]]:
    if health is None:
        return None, ()
    checks = [c for c in health.get("checks") or [] if isinstance(c, Mapping)]
    failed = tuple(f"{c.get('name')}: {c.get('detail')}" for c in checks if not c.get("ok"))
    return bool(health.get("ok")), failed


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _outcome(report: Mapping[str, Any]) -> str:
    stated = report.get("outcome")
    if stated in OUTCOMES:
        return str(stated)
    return "failed" if report.get("error") else "ok"


def _backup_path(backup: object) -> str | None:
    if isinstance(backup, Mapping):
        return str(backup["path"]) if backup.get("path") else None
    return str(backup) if backup else None


def message(event: Event, secrets: Iterable[str] = ()) -> Message:
    """Title and body for a phone, and the JSON fields of the run's report: scrubbed."""
    scrub = Scrubber(secrets).text
    fields = {k: v for k, v in _clean(event.report, scrub).items() if k != "event"}
    fields["event"] = _clean(event.as_dict(), scrub)
    return Message(
        title=scrub(_title(event)),
        body=scrub("\n".join(_body(event))),
        kind=_KIND.get(event.outcome, "warning"),
        fields=fields,
    )


def _title(event: Event) -> str:
    """Like "✗ prod migrate failed on app (db.example.com)"."""
    if event.command == "notify-test":
        return f"✓ predeploy test message from {event.host} (env {event.env})"
    where = _where(event.database)
    return f"{_MARK[event.outcome]} {event.env} {event.command} {event.outcome}" + (
        f" on {where}" if where else ""
    )


def _where(database: str) -> str:
    """ "app (db.example.com)" from a redacted URL; "" when it names nothing."""
    try:
        parts = urlsplit(database)
        host = parts.hostname or parse_qs(parts.query).get("host", ["local socket"])[0]
    except ValueError:
        return ""
    name = parts.path.lstrip("/")
    return f"{name} ({host})" if name else ""


def _body(event: Event) -> list[str]:
    lines = [f"error: {event.error}"] if event.error else []
    if event.command == "notify-test":
        lines.append("predeploy can reach this destination; nothing was changed.")
    elif event.applied:
        done = "rolled back" if event.command == "rollback" else "applied"  # its down.sql ran
        lines.append(f"{done} {len(event.applied)}:")
        lines += [f"  {a.name} ({a.seconds:.1f} s)" for a in event.applied[:_LISTED]]
        if len(event.applied) > _LISTED:
            lines.append(f"  … and {len(event.applied) - _LISTED} more")
    elif not event.changed:
        lines.append("the database was not changed")
    if event.backup:
        lines.append(f"backup: {event.backup}")
    if event.health_ok is not None:
        lines.append("health: ok" if event.health_ok else "health: FAILED")
        lines += [f"  {line}" for line in event.health_failed[:_LISTED]]
    lines += _hosts(event)
    if event.drift:
        lines.append(f"drift: {event.drift} difference(s) (predeploy drift --env {event.env})")
    elif event.drift_skipped:
        lines.append(f"drift: {event.drift_skipped}")
    revision = f", rev {event.git_revision[:12]}" if event.git_revision else ""
    lines.append(f"by {event.operator} on {event.host}{revision}")
    return lines + _runbook(event)


def _hosts(event: Event) -> list[str]:
    """A deploy over app hosts: which hosts have which outcome (new release or not)."""
    if not event.hosts:
        return []
    by: dict[str, list[str]] = {}
    runs: dict[str, list[str]] = {}
    for name, said, release in event.hosts:
        by.setdefault(said, []).append(name)
        if release:
            runs.setdefault(release, []).append(name)
    lines = ["hosts: " + "; ".join(f"{said} {', '.join(names)}" for said, names in by.items())]
    if runs:
        lines.append(
            "release: " + "; ".join(f"{r} on {', '.join(names)}" for r, names in runs.items())
        )
    return lines


def _runbook(event: Event) -> list[str]:
    """The runbook whole (its comments say which commands are alternatives), or, when it is
    too long for a phone, where it is: never the first few commands of it."""
    if not any(line.strip() and not line.lstrip().startswith("#") for line in event.runbook):
        return []
    heading = "runbook:" if event.outcome != "ok" else "to undo:"
    if len(event.runbook) <= _RUNBOOK_LINES or event.runbook_path is None:
        return [heading, *(f"  {line}" for line in event.runbook)]
    intro = event.runbook[0]
    return [
        f"{heading} {len(event.runbook)} lines, see the runbook at {event.runbook_path}"
        f" on {event.host}",
        *([f"  {intro}"] if intro.startswith("#") else []),
    ]


def _clean(value: Any, scrub: Callable[[str], str]) -> Any:
    """JSON-ready, scrubbed, and without SQL: keys "sql" and "*_sql" are dropped."""
    if isinstance(value, Mapping):
        return {
            scrub(str(k)): _clean(v, scrub)
            for k, v in value.items()
            if not (str(k).lower() == "sql" or str(k).lower().endswith("_sql"))
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, scrub) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


def send(config: NotifyConfig, event: Event) -> list[Delivery]:
    """Notify every URL when PREDEPLOY_NOTIFY_ON asks for it; one Delivery per URL.

    Never raises and returns within ``config.timeout``; no URLs or no reason: [].
    """
    if not config.urls or not should_notify(event, config.on):
        return []
    return _deliver(config, event)


def test(config: NotifyConfig, *, env: str) -> list[Delivery]:
    """``predeploy notify-test``: a test message to every URL, whatever PREDEPLOY_NOTIFY_ON."""
    if not config.urls:
        raise ConfigError(
            "PREDEPLOY_NOTIFY_URLS is empty: set it to one or more apprise URLs, comma-separated"
            " (for example slack://TOKEN_A/TOKEN_B/TOKEN_C or jsons://hooks.example.com/deploy)"
        )
    return _deliver(config, Event(command="notify-test", env=env, outcome="ok"))


test.__test__ = False  # type: ignore[attr-defined]  # pytest: not a test, if imported into one


def _deliver(config: NotifyConfig, event: Event) -> list[Delivery]:
    scrub = Scrubber(config.secrets).text
    try:
        return deliver(
            config.urls, message(event, config.secrets), timeout=config.timeout, scrub=scrub
        )
    except Exception as exc:  # a bug here must not fail the run it reports on
        detail = scrub(f"internal error: {type(exc).__name__}: {exc}".splitlines()[0])
        return [Delivery("(every URL)", False, detail, 0.0)]


def log_deliveries(deliveries: Iterable[Delivery]) -> None:
    """One event per URL: ``notification_sent`` (info) or ``notification_failed`` (warning)."""
    for d in deliveries:
        emit = log.info if d.ok else log.warning
        name = "notification_sent" if d.ok else "notification_failed"
        emit(name, url=d.url, detail=d.detail, seconds=round(d.seconds, 3))


def warnings(deliveries: Iterable[Delivery]) -> list[str]:
    """The report's warning lines for the deliveries that failed."""
    return [f"notification to {d.url} failed: {d.detail}" for d in deliveries if not d.ok]
