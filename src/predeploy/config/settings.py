"""Settings: read once per run from the `.env` files and the process environment.

Sources, lowest first (see ``envfiles``): Prisma's `prisma/.env`, `.env`, then
`.env.<env>`, then the process environment, which wins; ``${VAR}`` references
resolve across them. The database URLs keep the app's own names, found in
Prisma's files (``datasource``); predeploy's own settings are all prefixed
PREDEPLOY_, and an unknown PREDEPLOY_ name is an error. The result is one frozen
``Settings`` passed explicitly to whatever needs it; nothing here reads the
environment at import time. Which project and env: ``project``; each PREDEPLOY_*
variable read and checked: ``fields``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predeploy._util.redact import Scrubber, notify_url_secrets
from predeploy.config import fields
from predeploy.config import values as v
from predeploy.config.datasource import read_databases
from predeploy.config.dburl import DatabaseUrl
from predeploy.config.envfiles import EnvLayers, find_env_files, load_layers
from predeploy.config.names import check_names
from predeploy.config.prisma import PrismaProject, discover
from predeploy.config.project import check_env
from predeploy.config.values import parse_duration

if TYPE_CHECKING:
    from predeploy.config.fleet import Member
    from predeploy.config.parts import BackupSettings, Pm2Settings

__all__ = ["Settings", "load_settings", "parse_duration"]


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
    # a fleet's target (predeploy.config.fleet): its name goes into every pasted command
    member: Member | None = None
    layers: EnvLayers | None = field(default=None, repr=False, compare=False)

    def variable(self, name: str) -> str | None:
        """A variable as this env sees it (the process environment, then its .env files)."""
        return None if self.layers is None else self.layers.get(name)

    @property
    def in_fleet(self) -> bool:
        """True for one target of a fleet run: it asks nothing, shows nothing, notifies
        nothing and keeps no runbook file of its own (the fleet run does, once)."""
        return self.member is not None and self.member.fleet_run is not None

    @property
    def env_words(self) -> tuple[str, ...]:
        """``--env ENV`` (and ``--target NAME`` for a fleet's target): where a pasted
        predeploy command acts."""
        words = ("--env", self.env)
        return words if self.member is None else (*words, "--target", self.member.name)

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
            target=None if self.member is None else self.member.name,
            schema=None if self.member is None else self.member.schema,
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


def load_settings(env: str, root: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings of ``env`` for the project at ``root``."""
    environ = os.environ if environ is None else environ
    check_env(env, root)
    prisma = discover(root)
    files = find_env_files(
        root, env, schema_dir=prisma.schema_dir, has_prisma_config=prisma.config_file is not None
    )
    unconfigured = find_env_files(root, env, schema_dir=prisma.schema_dir, has_prisma_config=False)
    layers = load_layers(files, root, environ, [p for p in unconfigured if p not in files])
    check_names({name: layers.source(name) or "" for name in layers.names()})
    return _build(env, root, layers, prisma, environ)


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
    notes += fields.env_in_file(env, layers)
    named: dict[str, Any] = {
        **fields.run_fields(get, root, prisma),
        **fields.backup_fields(get, root),
        **fields.ops_fields(get),
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
        other_secrets=fields.other_secrets(layers, environ),
        layers=layers,
        **named,
    )
