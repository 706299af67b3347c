"""One task's life: its settings, its logging, its command and rendering inside the error
boundary, then the command's own error (``result.error``) as its exit code.

A task hands ``run`` a command (settings -> a result with ``as_dict()``, the JSON it
prints) and a renderer (result -> the human text); nothing else decides anything here.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import structlog

from predeploy._util import log as log_mod
from predeploy.cli import boundary, fleet_flags, output, signals
from predeploy.config.project import env_name, find_root
from predeploy.config.settings import Settings, load_settings
from predeploy.errors import PredeployError

if TYPE_CHECKING:
    from predeploy.commands.runbook import Runbook

__all__ = ["Result", "run"]


class Result(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Result)


def run(
    env: str | None,
    json_output: bool,
    command: Callable[[Settings], R],
    render: Callable[[R], str],
) -> None:
    """Settings, logging, then ``command`` and its report (``render``ed, or its JSON);
    every failure becomes one line and an exit code (boundary.exit_for)."""
    with signals.handled():
        settings = _settings(env, json_output)
        log_file = _logging(settings, json_output)
        flags = fleet_flags.current()
        if flags.fleet and flags.task != "deploy":  # deploy: its own two fleet phases
            # the command over every target: one report of its own
            from predeploy.cli import fleet_run  # noqa: PLC0415 (fleet runs only)

            boundary.guarded(
                lambda: _report(
                    fleet_run.run(settings, command, flags, json_output),
                    fleet_run.render,
                    json_output,
                ),
                log_file,
                json_output=json_output,
            )
            return
        boundary.guarded(
            lambda: _report(command(_targeted(settings, flags)), render, json_output),
            log_file,
            json_output=json_output,
        )


def _targeted(settings: Settings, flags: fleet_flags.FleetFlags) -> Settings:
    """The settings of ``--target NAME`` (one target of the fleet), else the env's."""
    if flags.target is None:
        return settings
    from predeploy.cli import fleet_run  # noqa: PLC0415 (fleet runs only)

    return fleet_run.target_settings(settings, flags.target)


def _settings(env: str | None, json_output: bool) -> Settings:
    try:
        return load_settings(env_name(env), find_root(Path.cwd()))
    except PredeployError as exc:  # no env yet, so no log file: the message is all there is
        if json_output:
            boundary.report_failure(exc.message, exc.exit_code)
        boundary.fail(exc)
    except KeyboardInterrupt as exc:
        boundary.fail(exc)


def _logging(settings: Settings, json_output: bool) -> str | None:
    setup = log_mod.configure(
        env=settings.env,
        log_dir=settings.log_dir,
        json_output=json_output,
        scrubber=settings.scrubber,
        colors=output.colors(),
        level=output.log_level(json_output),
    )
    output.set_scrubber(settings.scrubber)  # stdout and the final line mask through it
    for warning in settings.warnings:
        structlog.get_logger("predeploy").warning("configuration_warning", detail=warning)
    return str(setup.log_file) if setup.log_file else None


def _report(result: R, render: Callable[[R], str], json_output: bool) -> None:
    """The result on stdout, its runbook somewhere, then its error (if it carries one)."""
    output.emit(result.as_dict(), "" if json_output else render(result), json_output)
    _runbook_somewhere(getattr(result, "runbook", None), json_output=json_output)
    error: PredeployError | None = getattr(result, "error", None)
    if error is not None:
        raise error


def _runbook_somewhere(runbook: Runbook | None, *, json_output: bool) -> None:
    """A runbook neither its file nor stdout could take (a full disk under both) goes to
    stderr: it is the way back, and must reach the operator somewhere."""
    if runbook is None or runbook.path is not None or not output.stdout_lost():
        return
    if json_output:  # stderr carries JSON lines: the runbook as one more
        structlog.get_logger("predeploy").warning("runbook_on_stderr", commands=runbook.commands)
        return
    from predeploy.cli.render_run import render_runbook  # noqa: PLC0415 (runs only)

    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(output.mask(render_runbook(runbook).lstrip("\n")) + "\n")
        sys.stderr.flush()
