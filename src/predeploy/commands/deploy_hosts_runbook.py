"""The runbook of a deploy over app hosts: which hosts run the new release, how to go back.

Every host is named with its state (the new release, healthy or not; the reload in flight;
not reached: the previous release), and every command runs when pasted: on a host, an
``ssh`` line (its port, its key, its app folder, its PM2_HOME and the pm2 program found
there); here, predeploy as ``_util.pasted.command`` names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from predeploy._util.pasted import command
from predeploy.commands.deploy_hosts import FAILED, INTERRUPTED, NOT_REACHED, Rolling
from predeploy.integrations import hosts

if TYPE_CHECKING:
    from predeploy.commands.deploy_hosts import HostResult

__all__ = ["revert_lines", "state_lines"]


def state_lines(rolling: Rolling) -> list[str]:
    """One comment line per host: what it runs now, and why."""
    rollout = rolling.rollout
    lines = [
        f"# rollout over {len(rolling.results)} host(s) in waves of {rollout.serial} "
        f"(max_fail {rollout.max_fail}):"
    ]
    lines += [f"#   {r.name} ({r.destination}): {_state(r)}" for r in rolling.results]
    new = [r.name for r in rolling.results if r.new_release]
    old = [r.name for r in rolling.results if not r.new_release]
    lines.append(
        f"# the new release runs on: {', '.join(new) or 'no host'}; the previous one on: "
        f"{', '.join(old) or 'no host'}"
    )
    for result in rolling.results:
        if result.outcome == FAILED and result.name in rolling.sessions:
            lines += [
                f"# {result.name}'s recent logs:",
                hosts.pasted(
                    rolling.sessions[result.name],
                    "logs",
                    _app(rolling, result),
                    "--lines",
                    "100",
                    "--nostream",
                ),
            ]
    return lines


def revert_lines(rolling: Rolling, env: str) -> list[str]:
    """How to put the previous release back on the hosts that run the new one."""
    back = [r for r in rolling.results if r.new_release and r.name in rolling.sessions]
    if not back:
        return ["# no host runs the new release: there is no release to put back"]
    lines = [
        f"# to put the previous release back on {', '.join(r.name for r in back)}: with pm2's "
        f"deploy section, from your machine,",
        "#   pm2 deploy ecosystem.config.js production revert 1   (every host of that pm2 env)",
        "# or put the previous code back in each host's app folder, then reload it there:",
    ]
    lines += [hosts.pasted(rolling.sessions[r.name], "reload", _app(rolling, r)) for r in back]
    return [*lines, "# then check every host:", command("health", "--env", env)]


def _state(result: HostResult) -> str:
    if result.outcome == NOT_REACHED:
        why = f" ({result.detail})" if result.detail and result.detail != "stopped before" else ""
        return f"not reached: still the previous release{why}"
    if result.outcome == FAILED and result.reloaded:
        return f"the new release, NOT healthy: {result.detail}"
    if result.outcome == FAILED:
        return f"the reload failed (it may have happened in part): {result.detail}"
    if result.outcome == INTERRUPTED:
        return f"interrupted: {result.detail}"
    return f"the new release, healthy (pids {', '.join(map(str, result.pids))})"


def _app(rolling: Rolling, result: HostResult) -> str:
    return rolling.sessions[result.name].host.pm2_app
