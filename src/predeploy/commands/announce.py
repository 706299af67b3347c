"""Telling the team: one notification per run, after its audit row, never in its way.

Each command that changes or guards the database (migrate, rollback, restore, deploy,
maintenance) sends it through its run's lifecycle (``commands.run.Lifecycle.announce``),
once it has written its audit row. With no
PREDEPLOY_NOTIFY_URLS it does nothing (apprise is not even imported); otherwise it sends
what PREDEPLOY_NOTIFY_ON asks for, within PREDEPLOY_NOTIFY_TIMEOUT, and returns warning
lines for the run's report: a notification can never fail the run or change its exit code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from predeploy.config.policy import policy_for
from predeploy.config.settings import Settings
from predeploy.errors import INTERRUPTED_CODES
from predeploy.programs import git

__all__ = ["announce"]


def announce(
    settings: Settings,
    command: str,
    report: Mapping[str, Any],
    *,
    changed: bool,
    exit_code: int = 0,
    drift: int = 0,
    protected: bool | None = None,
) -> list[str]:
    """Send the run's notification; returns the warnings to show (failed deliveries).

    ``protected``: the policy the run had (its database may have raised the env's)."""
    if not settings.notify_urls:
        return []
    from predeploy.integrations import notify  # noqa: PLC0415 (apprise only when notifications are on)

    config = notify.NotifyConfig(
        urls=settings.notify_urls,
        on=frozenset(settings.notify_on),
        timeout=settings.notify_timeout,
        secrets=settings.secrets(),
    )
    url = settings.migration_url
    event = notify.event_from_report(
        command,
        report,
        env=settings.env,
        protected=policy_for(settings).protected if protected is None else protected,
        database=str(url) if url is not None else "the embedded dev database",
        changed=changed,
        outcome="interrupted" if exit_code in INTERRUPTED_CODES else None,
        git_revision=git.revision(settings.root),
        drift=drift,
    )
    deliveries = notify.send(config, event)
    notify.log_deliveries(deliveries)
    return notify.warnings(deliveries)
