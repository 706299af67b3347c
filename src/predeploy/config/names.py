"""The names of predeploy's own settings, so that a typo never falls back to a default."""

from __future__ import annotations

from collections.abc import Mapping

from predeploy.config.values import closest
from predeploy.errors import ConfigError

__all__ = ["KNOWN_SETTINGS", "PREFIX", "check_names"]

PREFIX = "PREDEPLOY_"

# Every PREDEPLOY_ name anything reads. Settings read outside load_settings count too:
# PREDEPLOY_ENV and PREDEPLOY_ROOT (the CLI), PREDEPLOY_VENV (the shell hooks),
# PREDEPLOY_TEST_DSN (the test suite). A new setting is added here and in .env.example.
KNOWN_SETTINGS = frozenset(
    {
        "PREDEPLOY_ALLOW_NO_BACKUP",
        "PREDEPLOY_AUDIT_TABLE",
        "PREDEPLOY_BACKUP_DIR",
        "PREDEPLOY_BACKUP_JOBS",
        "PREDEPLOY_BACKUP_KEEP",
        "PREDEPLOY_BACKUP_MAX_AGE_DAYS",
        "PREDEPLOY_BLOCKER_MAX_AGE",
        "PREDEPLOY_BLOCKER_WAIT",
        "PREDEPLOY_CONNECT_TIMEOUT",
        "PREDEPLOY_DEPLOY_WAIT",
        "PREDEPLOY_DIRECT_URL_VAR",
        "PREDEPLOY_DRIFT_EXPECTED",
        "PREDEPLOY_ENV",
        "PREDEPLOY_HEALTHCHECK_RETRIES",
        "PREDEPLOY_HEALTHCHECK_TIMEOUT",
        "PREDEPLOY_HEALTHCHECK_URL",
        "PREDEPLOY_LINT_LARGE_TABLE_ROWS",
        "PREDEPLOY_LOCK_RETRIES",
        "PREDEPLOY_LOCK_TIMEOUT",
        "PREDEPLOY_LOCK_WAIT",
        "PREDEPLOY_LOG_DIR",
        "PREDEPLOY_LOG_KEEP_DAYS",
        "PREDEPLOY_MAINTENANCE_VACUUM",
        "PREDEPLOY_MIGRATIONS_DIR",
        "PREDEPLOY_MIGRATIONS_TABLE",
        "PREDEPLOY_NOTIFY_ON",
        "PREDEPLOY_NOTIFY_TIMEOUT",
        "PREDEPLOY_NOTIFY_URLS",
        "PREDEPLOY_PG_BIN_DIR",
        "PREDEPLOY_PM2_APP",
        "PREDEPLOY_PM2_BIN",
        "PREDEPLOY_PROTECTED",
        "PREDEPLOY_ROOT",
        "PREDEPLOY_SHADOW_DATABASE_URL",
        "PREDEPLOY_STATEMENT_TIMEOUT",
        "PREDEPLOY_TEST_DSN",
        "PREDEPLOY_URL_VAR",
        "PREDEPLOY_VENV",
    }
)


def check_names(sources: Mapping[str, str]) -> None:
    """ConfigError naming every unknown PREDEPLOY_ name (``sources``: name → where it is set)."""
    unknown = sorted(n for n in sources if n.upper().startswith(PREFIX) and n not in KNOWN_SETTINGS)
    if not unknown:
        return
    described = "; ".join(
        f"{n} in {sources[n]}{closest(n.upper(), KNOWN_SETTINGS)}" for n in unknown
    )
    plural = "s" if len(unknown) > 1 else ""
    raise ConfigError(
        f"unknown predeploy setting{plural}: {described}: fix the name or remove it "
        f"(.env.example lists every setting)"
    )
