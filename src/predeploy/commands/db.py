"""`predeploy db up|down|url`: the embedded dev PostgreSQL under .pgdata/."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from predeploy._util import lazy
from predeploy.config.settings import Settings

if TYPE_CHECKING:
    from predeploy.db import embedded
else:
    embedded = lazy.module("predeploy.db.embedded")

__all__ = ["Server", "Stopped", "down", "up"]


@dataclass(frozen=True)
class Server:
    server: embedded.EmbeddedServer

    @property
    def state(self) -> str:
        return "started" if self.server.started else "already running"

    def as_dict(self) -> dict[str, Any]:
        s = self.server
        return {"pgdata": str(s.pgdata), "pid": s.pid, "url": str(s.url), "state": self.state}


@dataclass(frozen=True)
class Stopped:
    stopped: bool

    @property
    def state(self) -> str:
        return "stopped" if self.stopped else "not running"

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state}


def up(settings: Settings) -> Server:
    """Start (or reuse) the embedded server and its dev database."""
    return Server(embedded.start(settings.pgdata))


def down(settings: Settings) -> Stopped:
    """Stop the embedded server (its data stays)."""
    return Stopped(embedded.stop(settings.pgdata))
