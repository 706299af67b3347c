"""The Target: the database a run acts on, built once from the settings (pure: no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from predeploy.config.policy import EMBEDDED
from predeploy.config.settings import Settings, load_settings
from predeploy.db import target as db_target

POOLED = "postgresql://app:s3cret@pooler.internal:6432/app?pgbouncer=true"
DIRECT = "postgresql://app:s3cret@db.internal:5432/app?schema=billing"


def _settings(tmp_path: Path, env: str = "staging", **environ: str) -> Settings:
    return load_settings(env, tmp_path, environ)


@pytest.mark.parametrize(
    ("environ", "direct_var", "app_var", "schema", "server", "local"),
    [
        ({"DATABASE_URL": POOLED}, "DATABASE_URL", "DATABASE_URL", "public",
         "pooler.internal:6432", False),
        ({"DATABASE_URL": POOLED, "DIRECT_URL": DIRECT}, "DIRECT_URL", "DATABASE_URL", "billing",
         "db.internal:5432", False),
        ({"DATABASE_URL": "postgresql://app@localhost/app?schema=s"}, "DATABASE_URL",
         "DATABASE_URL", "s", "localhost:5432", True),
        ({"DATABASE_URL": "postgresql://app@127.0.0.1:5433/app"}, "DATABASE_URL", "DATABASE_URL",
         "public", "127.0.0.1:5433", True),
    ],
)  # fmt: skip
def test_where_sessions_go(
    tmp_path: Path,
    environ: dict[str, str],
    direct_var: str,
    app_var: str,
    schema: str,
    server: str,
    local: bool,
) -> None:
    """Migrations, locks and backups go to the direct URL; health reads go where the app
    connects; the history and audit tables live in the direct URL's schema=."""
    target = db_target.of(_settings(tmp_path, **environ))
    assert not target.embedded
    assert target.direct.variable == direct_var
    assert target.app.variable == app_var
    assert (target.schema, target.server, target.local) == (schema, server, local)
    assert (str(target.history), str(target.audit)) == (
        f"{schema}._prisma_migrations",
        f"{schema}.predeploy_runs",
    )
    assert target.search_path == (None if schema == "public" else schema)
    assert target.url is target.direct.url


def test_the_direct_url_serves_when_it_is_the_only_one(tmp_path: Path) -> None:
    target = db_target.of(_settings(tmp_path, DIRECT_URL=DIRECT))
    assert target.direct.url.address == target.app.url.address == "db.internal:5432"


def test_limits_and_timeout_come_from_the_settings(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        DATABASE_URL=POOLED,
        PREDEPLOY_LOCK_TIMEOUT="7s",
        PREDEPLOY_STATEMENT_TIMEOUT="2min",
        PREDEPLOY_CONNECT_TIMEOUT="9",
    )
    target = db_target.of(settings)
    assert (target.limits.lock_timeout, target.limits.statement_timeout) == (7.0, 120.0)
    assert target.direct.timeout == target.app.timeout == settings.connect_timeout


@pytest.mark.parametrize(
    ("env", "protected", "expected"),
    [
        ("prod", None, (True, False)),
        ("staging", None, (False, False)),
        ("staging", "1", (True, False)),
        ("prod", "0", (False, True)),
        ("dev", "0", (False, True)),
    ],
)
def test_the_env_policy_travels_with_the_target(
    tmp_path: Path, env: str, protected: str | None, expected: tuple[bool, bool]
) -> None:
    """The env's policy (before the database is known) and PREDEPLOY_PROTECTED=0 (scratch)."""
    environ = {"DATABASE_URL": POOLED}
    if protected is not None:
        environ["PREDEPLOY_PROTECTED"] = protected
    target = db_target.of(_settings(tmp_path, env, **environ))
    assert (target.env_policy.protected, target.scratch) == expected
    assert target.env_policy.env == env


def test_building_the_embedded_target_starts_nothing(tmp_path: Path) -> None:
    """In dev without DATABASE_URL the target is the embedded server, started only when a
    session first needs its URL (not by building the target, not by asking where it is)."""
    target = db_target.of(_settings(tmp_path, "dev"))
    assert target.embedded
    assert (target.server, target.local, target.schema) == (EMBEDDED, True, "public")
    assert target.search_path is None
    assert not (tmp_path / ".pgdata").exists()


def test_the_settings_parts_hold_only_what_their_layer_reads(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        DATABASE_URL=POOLED,
        PREDEPLOY_BACKUP_DIR=str(tmp_path / "b"),
        PREDEPLOY_BACKUP_KEEP="3",
        PREDEPLOY_PM2_APP="web",
    )
    backup = settings.backup
    assert backup.folder == tmp_path / "b" / "staging"
    assert (backup.keep, backup.lock_wait, backup.jobs) == (3, settings.lock_wait, 1)
    assert (settings.pm2.app, settings.pm2.root) == ("web", tmp_path)
