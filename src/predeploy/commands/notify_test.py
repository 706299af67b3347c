"""`predeploy notify-test`: a test message to every PREDEPLOY_NOTIFY_URLS address."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from predeploy._util import lazy
from predeploy.config.settings import Settings
from predeploy.errors import CheckFailed

if TYPE_CHECKING:
    from predeploy.integrations import notify
else:  # apprise only here
    notify = lazy.module("predeploy.integrations.notify")

__all__ = ["Sent", "notify_test"]


@dataclass(frozen=True)
class Sent:
    deliveries: list[notify.Delivery]

    @property
    def error(self) -> CheckFailed | None:
        failed = [d for d in self.deliveries if not d.ok]
        if not failed:
            return None
        return CheckFailed(
            f"{len(failed)} of {len(self.deliveries)} notification URL(s) failed: see above"
        )

    def as_dict(self) -> dict[str, Any]:
        return {"deliveries": [d.as_dict() for d in self.deliveries]}


def _config_for(settings: Settings) -> notify.NotifyConfig:
    """PREDEPLOY_NOTIFY_URLS, _ON and _TIMEOUT, and every password the settings know."""
    return notify.NotifyConfig(
        urls=settings.notify_urls,
        on=frozenset(settings.notify_on),
        timeout=settings.notify_timeout,
        secrets=settings.secrets(),
    )


def notify_test(settings: Settings) -> Sent:
    """A test message to every URL, whatever PREDEPLOY_NOTIFY_ON; each one's result."""
    return Sent(notify.test(_config_for(settings), env=settings.env))
