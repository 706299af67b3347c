"""predeploy's own PREDEPLOY_* variables, read into the fields of ``Settings``: each
checked (``values``) with its default; the secrets among them; the notes a run prints."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from predeploy._util.redact import url_secrets
from predeploy.config import values as v
from predeploy.config.envfiles import EnvLayers
from predeploy.config.prisma import PrismaProject
from predeploy.config.values import parse_duration
from predeploy.errors import ConfigError

__all__ = ["backup_fields", "env_in_file", "ops_fields", "other_secrets", "run_fields"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def other_secrets(layers: EnvLayers, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The password and query values of every PREDEPLOY_* setting that is a URL (the
    notification URLs have their own, wider rule), and PGPASSWORD, which libpq uses for a
    URL without a password."""
    found: list[str] = []
    names = [
        n for n in layers.names() if n.startswith("PREDEPLOY_") and n != "PREDEPLOY_NOTIFY_URLS"
    ]
    for name in sorted(names):
        try:
            value = layers.get(name) or ""
        except ConfigError:
            continue  # an unset ${REF}: reading the setting itself says so
        for part in (p.strip() for p in value.split(",")):
            found += url_secrets(part) if _URL.match(part) else []
    found += [environ["PGPASSWORD"]] if environ.get("PGPASSWORD") else []
    return tuple(dict.fromkeys(s for s in found if s))


_Get = Callable[[str], "str | None"]


def env_in_file(env: str, layers: EnvLayers) -> list[str]:
    """PREDEPLOY_ENV in a .env file is never read (the env picks the files): say so when it
    names another env than this run's."""
    named, source = layers.get("PREDEPLOY_ENV"), layers.source("PREDEPLOY_ENV")
    if not named or named == env or source in (None, "the environment"):
        return []
    return [
        f"PREDEPLOY_ENV={named} in {source} is not read (the env is chosen before the .env "
        f"files): this run is env {env}; export PREDEPLOY_ENV={named} in the environment of "
        f"the user that runs predeploy, or pass --env {named}"
    ]


def run_fields(get: _Get, root: Path, prisma: PrismaProject) -> dict[str, Any]:
    return {
        "log_dir": root / (get("PREDEPLOY_LOG_DIR") or "logs"),
        "log_keep_days": v.count(get("PREDEPLOY_LOG_KEEP_DAYS") or "90", "PREDEPLOY_LOG_KEEP_DAYS"),
        "migrations_dir": _migrations_dir(get("PREDEPLOY_MIGRATIONS_DIR"), root, prisma),
        "migrations_table": v.table(
            get("PREDEPLOY_MIGRATIONS_TABLE") or "_prisma_migrations", "PREDEPLOY_MIGRATIONS_TABLE"
        ),
        "audit_table": v.table(
            get("PREDEPLOY_AUDIT_TABLE") or "predeploy_runs", "PREDEPLOY_AUDIT_TABLE"
        ),
        "lock_wait": parse_duration(get("PREDEPLOY_LOCK_WAIT") or "60s", "PREDEPLOY_LOCK_WAIT"),
        "lock_timeout": v.positive(get("PREDEPLOY_LOCK_TIMEOUT") or "2s", "PREDEPLOY_LOCK_TIMEOUT"),
        "statement_timeout": parse_duration(
            get("PREDEPLOY_STATEMENT_TIMEOUT") or "0", "PREDEPLOY_STATEMENT_TIMEOUT"
        ),
        "lock_retries": v.count(get("PREDEPLOY_LOCK_RETRIES") or "10", "PREDEPLOY_LOCK_RETRIES"),
        "protected": v.protected(get("PREDEPLOY_PROTECTED"), "PREDEPLOY_PROTECTED"),
        "lint_large_table_rows": v.count(
            get("PREDEPLOY_LINT_LARGE_TABLE_ROWS") or "1000000", "PREDEPLOY_LINT_LARGE_TABLE_ROWS"
        ),
        "blocker_max_age": v.positive(
            get("PREDEPLOY_BLOCKER_MAX_AGE") or "60s", "PREDEPLOY_BLOCKER_MAX_AGE"
        ),
        "blocker_wait": parse_duration(
            get("PREDEPLOY_BLOCKER_WAIT") or "60s", "PREDEPLOY_BLOCKER_WAIT"
        ),
    }


def backup_fields(get: _Get, root: Path) -> dict[str, Any]:
    return {
        "pg_bin_dir": v.pg_bin_dir(get("PREDEPLOY_PG_BIN_DIR"), "PREDEPLOY_PG_BIN_DIR", root),
        "backup_dir": root / (get("PREDEPLOY_BACKUP_DIR") or "backups"),
        "backup_jobs": v.count(
            get("PREDEPLOY_BACKUP_JOBS") or "1", "PREDEPLOY_BACKUP_JOBS", minimum=1
        ),
        "backup_keep": v.count(get("PREDEPLOY_BACKUP_KEEP") or "10", "PREDEPLOY_BACKUP_KEEP"),
        "backup_max_age_days": v.days(
            get("PREDEPLOY_BACKUP_MAX_AGE_DAYS"), "PREDEPLOY_BACKUP_MAX_AGE_DAYS"
        ),
        "allow_no_backup": v.flag(get("PREDEPLOY_ALLOW_NO_BACKUP"), "PREDEPLOY_ALLOW_NO_BACKUP"),
        "drift_expected": root / expected
        if (expected := get("PREDEPLOY_DRIFT_EXPECTED"))
        else None,
    }


def ops_fields(get: _Get) -> dict[str, Any]:
    pm2_bin = get("PREDEPLOY_PM2_BIN")
    notify_urls = v.notify_urls(get("PREDEPLOY_NOTIFY_URLS"), "PREDEPLOY_NOTIFY_URLS")
    return {
        "pm2_app": get("PREDEPLOY_PM2_APP"),
        "pm2_bin": Path(pm2_bin) if pm2_bin else None,
        "healthcheck_url": v.http_url(
            get("PREDEPLOY_HEALTHCHECK_URL"), "PREDEPLOY_HEALTHCHECK_URL"
        ),
        "healthcheck_timeout": v.positive(
            get("PREDEPLOY_HEALTHCHECK_TIMEOUT") or "5s", "PREDEPLOY_HEALTHCHECK_TIMEOUT"
        ),
        "healthcheck_retries": v.count(
            get("PREDEPLOY_HEALTHCHECK_RETRIES") or "3", "PREDEPLOY_HEALTHCHECK_RETRIES", minimum=1
        ),
        "deploy_wait": v.positive(get("PREDEPLOY_DEPLOY_WAIT") or "60s", "PREDEPLOY_DEPLOY_WAIT"),
        "maintenance_vacuum": v.flag(
            get("PREDEPLOY_MAINTENANCE_VACUUM"), "PREDEPLOY_MAINTENANCE_VACUUM"
        ),
        "notify_urls": notify_urls,
        "notify_on": v.notify_on(get("PREDEPLOY_NOTIFY_ON"), "PREDEPLOY_NOTIFY_ON"),
        "notify_timeout": v.positive(
            get("PREDEPLOY_NOTIFY_TIMEOUT") or "5s", "PREDEPLOY_NOTIFY_TIMEOUT"
        ),
    }


def _migrations_dir(named: str | None, root: Path, prisma: PrismaProject) -> Path:
    """PREDEPLOY_MIGRATIONS_DIR; else Prisma's (the config's, or beside the schema file);
    else prisma/migrations when it exists; else migrations."""
    if named:
        return root / named
    if prisma.migrations_dir is not None:
        return prisma.migrations_dir
    if prisma.schema_dir is not None:
        return prisma.schema_dir / "migrations"
    prisma_default = root / "prisma" / "migrations"
    return prisma_default if prisma_default.is_dir() else root / "migrations"
