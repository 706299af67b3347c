"""Settings: read once per run from `.env`, `.env.<env>` and the process environment.

Later sources win: `.env`, then `.env.<env>`, then the process environment. The
result is one frozen ``Settings`` passed explicitly to whatever needs it; nothing
here reads the environment at import time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from predeploy.config.dburl import DatabaseUrl, parse_url
from predeploy.errors import ConfigError

__all__ = [
    "BUILTIN_ENVS",
    "Settings",
    "available_envs",
    "env_name",
    "find_root",
    "load_settings",
    "parse_duration",
]

BUILTIN_ENVS = ("dev", "staging", "prod")
_NOT_ENVS = frozenset({"example", "sample", "template"})
_ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know, for one environment."""

    env: str
    root: Path
    files_read: tuple[Path, ...]
    database_url: DatabaseUrl | None
    direct_database_url: DatabaseUrl | None
    connect_timeout: float
    pg_bin_dir: Path | None
    log_dir: Path
    migrations_dir: Path
    migrations_table: str
    lock_wait: float
    lock_timeout: float
    statement_timeout: float
    lock_retries: int
    backup_dir: Path
    backup_jobs: int
    backup_keep: int
    backup_max_age_days: float | None
    allow_no_backup: bool
    audit_table: str
    pm2_app: str | None
    pm2_bin: Path | None = None
    healthcheck_url: str | None = None
    healthcheck_timeout: float = 5.0
    healthcheck_retries: int = 3
    deploy_wait: float = 60.0
    maintenance_vacuum: bool = False
    lint_large_table_rows: int = 1_000_000
    blocker_max_age: float = 60.0
    blocker_wait: float = 60.0

    @property
    def uses_embedded(self) -> bool:
        """True when this run uses the embedded dev PostgreSQL under `.pgdata/`."""
        return self.database_url is None

    @property
    def pgdata(self) -> Path:
        return self.root / ".pgdata"

    @property
    def migration_url(self) -> DatabaseUrl | None:
        """The URL for migrations and backups: DIRECT_DATABASE_URL when set."""
        return self.direct_database_url or self.database_url

    def secrets(self) -> tuple[str, ...]:
        """Every password this run knows, so that logs can scrub them."""
        urls = (self.database_url, self.direct_database_url)
        return tuple(u.password for u in urls if u is not None and u.password)


def parse_duration(value: str, variable: str) -> float:
    """Seconds from a PostgreSQL-style duration: `2s`, `500ms`, `1min`, `1.5` (seconds)."""
    match = _DURATION.match(value)
    if match is None:
        raise ConfigError(
            f"{variable}={value!r} is not a duration: use a number of seconds or a value "
            f"with a unit such as 500ms, 2s, 1min, 1h"
        )
    number, unit = match.groups()
    return float(number) * _UNIT_SECONDS[unit or "s"]


def available_envs(root: Path) -> tuple[str, ...]:
    """The built-in environments plus one per `.env.<name>` file in ``root``."""
    found = {
        path.name.removeprefix(".env.")
        for path in root.glob(".env.*")
        if path.is_file() and _ENV_NAME.match(path.name.removeprefix(".env."))
    }
    extra = sorted(found - set(BUILTIN_ENVS) - _NOT_ENVS)
    return (*BUILTIN_ENVS, *extra)


def load_settings(env: str, root: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings of ``env`` for the project at ``root``."""
    environ = os.environ if environ is None else environ
    envs = available_envs(root)
    if env not in envs:
        raise ConfigError(
            f"unknown environment {env!r}: available are {', '.join(envs)} "
            f"(create .env.{env} to add one)"
        )
    values: dict[str, str] = {}
    files_read: list[Path] = []
    for path in (root / ".env", root / f".env.{env}"):
        if path.is_file():
            values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
            files_read.append(path)
    values.update({k: v for k, v in environ.items() if v != ""})
    return _build(env, root, tuple(files_read), values)


def _build(env: str, root: Path, files_read: tuple[Path, ...], values: dict[str, str]) -> Settings:
    def get(name: str) -> str | None:
        return values.get(name) or None

    def path(name: str, default: str) -> Path:
        return root / (get(name) or default)

    database_url = _url(get("DATABASE_URL"), "DATABASE_URL")
    if database_url is None and env != "dev":
        read = ", ".join(str(p.name) for p in files_read) or "no .env files"
        raise ConfigError(
            f"DATABASE_URL is not set for env {env!r} (read: {read}, and the process "
            f"environment): set it in .env.{env} or export it"
        )
    pg_bin_dir, pm2_bin = get("PREDEPLOY_PG_BIN_DIR"), get("PREDEPLOY_PM2_BIN")
    return Settings(
        env=env,
        root=root,
        files_read=files_read,
        database_url=database_url,
        direct_database_url=_url(get("DIRECT_DATABASE_URL"), "DIRECT_DATABASE_URL"),
        connect_timeout=_positive(
            get("PREDEPLOY_CONNECT_TIMEOUT") or "5s", "PREDEPLOY_CONNECT_TIMEOUT"
        ),
        pg_bin_dir=Path(pg_bin_dir) if pg_bin_dir else None,
        log_dir=path("PREDEPLOY_LOG_DIR", "logs"),
        migrations_dir=path("PREDEPLOY_MIGRATIONS_DIR", "migrations"),
        migrations_table=_table(
            get("PREDEPLOY_MIGRATIONS_TABLE") or "_prisma_migrations", "PREDEPLOY_MIGRATIONS_TABLE"
        ),
        lock_wait=parse_duration(get("PREDEPLOY_LOCK_WAIT") or "60s", "PREDEPLOY_LOCK_WAIT"),
        lock_timeout=_positive(get("PREDEPLOY_LOCK_TIMEOUT") or "2s", "PREDEPLOY_LOCK_TIMEOUT"),
        statement_timeout=parse_duration(
            get("PREDEPLOY_STATEMENT_TIMEOUT") or "0", "PREDEPLOY_STATEMENT_TIMEOUT"
        ),
        lock_retries=_count(get("PREDEPLOY_LOCK_RETRIES") or "10", "PREDEPLOY_LOCK_RETRIES"),
        backup_dir=path("PREDEPLOY_BACKUP_DIR", "backups"),
        backup_jobs=max(1, _count(get("PREDEPLOY_BACKUP_JOBS") or "1", "PREDEPLOY_BACKUP_JOBS")),
        backup_keep=_count(get("PREDEPLOY_BACKUP_KEEP") or "10", "PREDEPLOY_BACKUP_KEEP"),
        backup_max_age_days=_days(get("PREDEPLOY_BACKUP_MAX_AGE_DAYS")),
        allow_no_backup=_flag(get("PREDEPLOY_ALLOW_NO_BACKUP")),
        audit_table=_table(
            get("PREDEPLOY_AUDIT_TABLE") or "predeploy_runs", "PREDEPLOY_AUDIT_TABLE"
        ),
        pm2_app=get("PREDEPLOY_PM2_APP"),
        pm2_bin=Path(pm2_bin) if pm2_bin else None,
        healthcheck_url=_http_url(get("PREDEPLOY_HEALTHCHECK_URL")),
        healthcheck_timeout=_positive(
            get("PREDEPLOY_HEALTHCHECK_TIMEOUT") or "5s", "PREDEPLOY_HEALTHCHECK_TIMEOUT"
        ),
        healthcheck_retries=max(
            1, _count(get("PREDEPLOY_HEALTHCHECK_RETRIES") or "3", "PREDEPLOY_HEALTHCHECK_RETRIES")
        ),
        deploy_wait=_positive(get("PREDEPLOY_DEPLOY_WAIT") or "60s", "PREDEPLOY_DEPLOY_WAIT"),
        maintenance_vacuum=_flag(get("PREDEPLOY_MAINTENANCE_VACUUM")),
        lint_large_table_rows=_count(
            (get("PREDEPLOY_LINT_LARGE_TABLE_ROWS") or "1000000").replace("_", "").replace(",", ""),
            "PREDEPLOY_LINT_LARGE_TABLE_ROWS",
        ),
        blocker_max_age=_positive(
            get("PREDEPLOY_BLOCKER_MAX_AGE") or "60s", "PREDEPLOY_BLOCKER_MAX_AGE"
        ),
        blocker_wait=parse_duration(
            get("PREDEPLOY_BLOCKER_WAIT") or "60s", "PREDEPLOY_BLOCKER_WAIT"
        ),
    )


def _flag(raw: str | None) -> bool:
    return (raw or "0").strip().lower() in ("1", "true", "yes", "on")


def _http_url(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not re.match(r"^https?://[^/\s]+", raw):
        scheme = raw.split("://", 1)[0] if "://" in raw else "no scheme"
        raise ConfigError(  # the value is not echoed: it may hold a password
            f"PREDEPLOY_HEALTHCHECK_URL is not an http(s) URL ({scheme}): use e.g. "
            f"http://127.0.0.1:3000/health"
        )
    return raw


def _url(raw: str | None, variable: str) -> DatabaseUrl | None:
    return parse_url(raw, variable) if raw else None


def _count(raw: str, variable: str) -> int:
    if not raw.strip().isdigit():
        raise ConfigError(f"{variable}={raw!r} must be a whole number (0 or more)")
    return int(raw)


def _days(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if days <= 0:
        raise ConfigError(
            f"PREDEPLOY_BACKUP_MAX_AGE_DAYS={raw!r} must be a number of days greater than zero"
        )
    return days


def _table(name: str, variable: str) -> str:
    if not _TABLE.match(name):
        raise ConfigError(
            f"{variable}={name!r} must be a plain table name "
            f"(letters, digits, underscores; at most 63)"
        )
    return name


def _positive(raw: str, variable: str) -> float:
    seconds = parse_duration(raw, variable)
    if seconds <= 0:
        raise ConfigError(f"{variable}={raw!r} must be greater than zero")
    return seconds


def find_root(start: Path, environ: Mapping[str, str] | None = None) -> Path:
    """The project root: PREDEPLOY_ROOT, else the nearest folder up from ``start`` with tasks.py."""
    environ = os.environ if environ is None else environ
    if environ.get("PREDEPLOY_ROOT"):
        return Path(environ["PREDEPLOY_ROOT"]).resolve()
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / "tasks.py").is_file():
            return folder
    return start


def env_name(requested: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The env a command runs in: ``--env``, else PREDEPLOY_ENV, else dev."""
    environ = os.environ if environ is None else environ
    return requested or environ.get("PREDEPLOY_ENV") or "dev"
