"""The command modules the tasks call (``predeploy.commands``), each imported on first use:
`predeploy status` never pays for the backup, deploy or lint machinery (see
predeploy._util.lazy; `python -X importtime -m predeploy status --help` shows it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from predeploy._util import lazy

if TYPE_CHECKING:
    from predeploy.commands import (
        backup,
        backups,
        check,
        db,
        deploy,
        drift,
        fleet,
        gates,
        health,
        init,
        lint,
        maintenance,
        migrate,
        new,
        notify_test,
        resolve,
        rollback,
        status,
    )
else:
    backup = lazy.module("predeploy.commands.backup")
    backups = lazy.module("predeploy.commands.backups")
    check = lazy.module("predeploy.commands.check")
    db = lazy.module("predeploy.commands.db")
    deploy = lazy.module("predeploy.commands.deploy")
    drift = lazy.module("predeploy.commands.drift")
    fleet = lazy.module("predeploy.commands.fleet")
    gates = lazy.module("predeploy.commands.gates")
    health = lazy.module("predeploy.commands.health")
    init = lazy.module("predeploy.commands.init")
    lint = lazy.module("predeploy.commands.lint")
    maintenance = lazy.module("predeploy.commands.maintenance")
    migrate = lazy.module("predeploy.commands.migrate")
    new = lazy.module("predeploy.commands.new")
    notify_test = lazy.module("predeploy.commands.notify_test")
    resolve = lazy.module("predeploy.commands.resolve")
    rollback = lazy.module("predeploy.commands.rollback")
    status = lazy.module("predeploy.commands.status")

__all__ = [
    "backup",
    "backups",
    "check",
    "db",
    "deploy",
    "drift",
    "fleet",
    "gates",
    "health",
    "init",
    "lint",
    "maintenance",
    "migrate",
    "new",
    "notify_test",
    "resolve",
    "rollback",
    "status",
]
