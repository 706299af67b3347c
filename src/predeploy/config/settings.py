"""Settings: read once per run from the `.env` files and the process environment.

Sources, lowest first (see ``envfiles``): Prisma's `prisma/.env`, `.env`, then
`.env.<env>`, then the process environment, which wins; ``${VAR}`` references
resolve across them. The database URLs keep the app's own names, found in
Prisma's files (``datasource``); predeploy's own settings are all prefixed
PREDEPLOY_, and an unknown PREDEPLOY_ name is an error. The result is one frozen
``Settings`` passed explicitly to whatever needs it; nothing here reads the
environment at import time.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predeploy._util.redact import Scrubber, notify_url_secrets, url_secrets
from predeploy.config import values as v
from predeploy.config.datasource import read_databases
from predeploy.config.dburl import DatabaseUrl
from predeploy.config.envfiles import EnvLayers, find_env_files, load_layers
from predeploy.config.names import check_names
from predeploy.config.prisma import PrismaProject, discover
from predeploy.config.values import parse_duration
from predeploy.errors import ConfigError

if TYPE_CHECKING:
    from predeploy.config.parts import BackupSettings, Pm2Settings

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
_ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]*\Z")


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know, for one environment."""

    env: str
    root: Path
    files_read: tuple[Path, ...]
    database_url: DatabaseUrl | None
    direct_database_url: DatabaseUrl | None
    connect_timeout: float  # what libpq really waits: whole seconds, at least 2
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
    database_url_var: str = "DATABASE_URL"
    direct_database_url_var: str | None = None
    shadow_database_url: DatabaseUrl | None = None
    shadow_database_url_var: str | None = None
    prisma_schema: Path | None = None
    prisma_config: Path | None = None
    protected: bool | None = None
    notify_urls: tuple[str, ...] = ()
    notify_on: tuple[str, ...] = ("failure", "prod-change")
    notify_timeout: float = 5.0
    log_keep_days: int = 90
    drift_expected: Path | None = None
    warnings: tuple[str, ...] = ()
    # what else is secret: the password and query values of every PREDEPLOY_* URL, PGPASSWORD
    other_secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def uses_embedded(self) -> bool:
        """True when this run uses the embedded dev PostgreSQL under `.pgdata/`."""
        return self.database_url is None

    @property
    def pgdata(self) -> Path:
        return self.root / ".pgdata"

    @property
    def backup(self) -> BackupSettings:
        """What the backups read (``predeploy.backup``)."""
        from predeploy.config.parts import BackupSettings  # noqa: PLC0415 (backups only)

        return BackupSettings(
            self.env,
            self.backup_dir,
            self.lock_wait,
            self.pg_bin_dir,
            self.backup_jobs,
            self.backup_keep,
            self.backup_max_age_days,
        )

    @property
    def pm2(self) -> Pm2Settings:
        """What the pm2 integration reads (``predeploy.integrations.pm2``)."""
        from predeploy.config.parts import Pm2Settings  # noqa: PLC0415 (deploys only)

        return Pm2Settings(self.pm2_app, self.pm2_bin, self.root, self.deploy_wait)

    @property
    def migration_url(self) -> DatabaseUrl | None:
        """The URL for migrations, locks and backups: the direct URL when there is one."""
        return self.direct_database_url or self.database_url

    @property
    def migration_url_var(self) -> str:
        """The variable the migration URL came from, for messages."""
        if self.direct_database_url is not None and self.direct_database_url_var:
            return self.direct_database_url_var
        return self.database_url_var

    def secrets(self) -> tuple[str, ...]:
        """Every secret this run knows (decoded and percent-encoded): the database URLs'
        passwords, the notification URLs' tokens, the other PREDEPLOY_* URLs' passwords and
        query values (the health URL's ``?key=``), PGPASSWORD."""
        urls = (self.database_url, self.direct_database_url, self.shadow_database_url)
        found = [s for u in urls if u is not None for s in u.secrets()]
        found += [s for url in self.notify_urls for s in notify_url_secrets(url)]
        found += self.other_secrets
        return tuple(dict.fromkeys(s for s in found if s))

    @functools.cached_property
    def scrubber(self) -> Scrubber:
        """The run's one redactor, built once: every sink masks through it (see redact)."""
        return Scrubber(self.secrets())


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
    _check_env(env, root)
    prisma = discover(root)
    files = find_env_files(
        root, env, schema_dir=prisma.schema_dir, has_prisma_config=prisma.config_file is not None
    )
    unconfigured = find_env_files(root, env, schema_dir=prisma.schema_dir, has_prisma_config=False)
    layers = load_layers(files, root, environ, [p for p in unconfigured if p not in files])
    check_names({name: layers.source(name) or "" for name in layers.names()})
    return _build(env, root, layers, prisma, environ)


def _check_env(env: str, root: Path) -> None:
    """``env`` names an env of ``root``; else a ConfigError saying which names there are."""
    lower = env.lower()
    if not _ENV_NAME.match(lower) or not lower.isascii():
        raise ConfigError(
            f"bad environment name {env!r}: env names are lowercase letters, digits, '_' and "
            "'-', starting with a letter (--env NAME reads .env.NAME)"
        )
    envs = available_envs(root)
    if env in envs:
        return
    if lower != env:
        rename = f" (rename .env.{env} to .env.{lower})" if (root / f".env.{env}").is_file() else ""
        raise ConfigError(
            f"unknown environment {env!r}: env names are lowercase, use --env {lower}, which "
            f"reads .env.{lower}{rename}"
        )
    raise ConfigError(
        f"unknown environment {env!r}: available are {', '.join(envs)} "
        f"(create .env.{env} to add one)"
    )


def _build(
    env: str, root: Path, layers: EnvLayers, prisma: PrismaProject, environ: Mapping[str, str]
) -> Settings:
    def get(name: str) -> str | None:
        return layers.get(name)

    timeout, timeout_note = v.connect_timeout(
        get("PREDEPLOY_CONNECT_TIMEOUT") or "5s", "PREDEPLOY_CONNECT_TIMEOUT"
    )
    dbs = read_databases(env, layers, prisma, default_connect_timeout=timeout, environ=environ)
    notes = [*layers.warnings, *dbs.warnings, *([timeout_note] if timeout_note else [])]
    notes += _env_in_file(env, layers)
    fields: dict[str, Any] = {
        **_run_fields(get, root, prisma),
        **_backup_fields(get, root),
        **_ops_fields(get),
    }
    return Settings(
        env=env,
        root=root,
        files_read=layers.files,
        database_url=dbs.database_url,
        direct_database_url=dbs.direct_database_url,
        database_url_var=dbs.database_url_var,
        direct_database_url_var=dbs.direct_database_url_var,
        shadow_database_url=dbs.shadow_database_url,
        shadow_database_url_var=dbs.shadow_database_url_var,
        prisma_schema=prisma.schema,
        prisma_config=prisma.config_file,
        connect_timeout=float(timeout),
        warnings=tuple(dict.fromkeys(notes)),
        other_secrets=_other_secrets(layers, environ),
        **fields,
    )


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _other_secrets(layers: EnvLayers, environ: Mapping[str, str]) -> tuple[str, ...]:
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


def _env_in_file(env: str, layers: EnvLayers) -> list[str]:
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


def _run_fields(get: _Get, root: Path, prisma: PrismaProject) -> dict[str, Any]:
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


def _backup_fields(get: _Get, root: Path) -> dict[str, Any]:
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


def _ops_fields(get: _Get) -> dict[str, Any]:
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


_ROOT_MARKERS: tuple[tuple[str, Callable[[Path], bool]], ...] = (
    ("prisma", Path.is_dir),
    ("package.json", Path.is_file),
    (".git", Path.exists),
    (".env", Path.is_file),
    ("tasks.py", Path.is_file),
)


def find_root(start: Path, environ: Mapping[str, str] | None = None) -> Path:
    """The project root: PREDEPLOY_ROOT, else the nearest folder up from ``start`` holding
    prisma/, package.json, .git, .env or tasks.py, else ``start``."""
    environ = os.environ if environ is None else environ
    named = environ.get("PREDEPLOY_ROOT")
    if named:
        root = Path(named).expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(f"PREDEPLOY_ROOT={named} is not a folder: name the app's folder")
        return root
    start = start.resolve()
    for folder in (start, *start.parents):
        if folder.name == "prisma" and not _is_repository(folder) and _is_root(folder.parent):
            continue  # prisma/.env marks the app above it, not a project of its own
        if _is_root(folder):
            return folder
    return start


def _is_root(folder: Path) -> bool:
    return any(check(folder / name) for name, check in _ROOT_MARKERS)


def _is_repository(folder: Path) -> bool:
    """An app's own folder (a repository that happens to be named prisma), not Prisma's."""
    return (
        (folder / ".git").exists()
        or (folder / "package.json").is_file()
        or (folder / "prisma").is_dir()
    )


def env_name(requested: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The env a command runs in: ``--env``, else PREDEPLOY_ENV, else dev."""
    environ = os.environ if environ is None else environ
    if requested is not None:
        return requested  # "" too: an empty --env is a mistake, not dev (load_settings says)
    return environ.get("PREDEPLOY_ENV") or "dev"
