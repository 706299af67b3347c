"""Confirmation before a destructive step: typed by a person, or explicitly waived.

The prompt itself is the caller's (``ask``: the CLI asks on /dev/tty), so the library
never touches the terminal; with no terminal and no ``--yes`` the answer is a refusal
(exit 8).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from predeploy._util.operator import operator
from predeploy.errors import Refused

__all__ = ["require_typed", "require_yes"]

log = structlog.get_logger(__name__)


def require_typed(
    expected: str,
    question: str,
    *,
    yes: bool,
    interactive: bool,
    ask: Callable[[str], str],
    action: str,
    gate: str = "confirmation",
) -> None:
    """Go on only if the operator types ``expected`` (or gave --yes); ``gate`` names the
    question in the audit row of a refusal."""
    answer = _answer(
        f"{question}\nType {expected!r} to go on: ", yes, interactive, ask, action, gate=gate
    )
    if answer is not None and answer.strip() != expected:
        raise Refused(
            f"{action} not confirmed (expected {expected!r}): nothing was changed",
            f"{gate} (declined)",
        )


def require_yes(
    question: str,
    *,
    yes: bool,
    interactive: bool,
    ask: Callable[[str], str],
    action: str,
    gate: str = "confirmation",
) -> None:
    """Go on only if the operator answers y (or gave --yes); anything else is a refusal."""
    answer = _answer(f"{question}\nGo on? [y/N] ", yes, interactive, ask, action, gate=gate)
    if answer is not None and answer.strip().lower() not in ("y", "yes"):
        raise Refused(f"{action} not confirmed: nothing was changed", f"{gate} (declined)")


def _answer(
    prompt: str,
    yes: bool,
    interactive: bool,
    ask: Callable[[str], str],
    action: str,
    *,
    gate: str,
) -> str | None:
    """The operator's answer; None when --yes waived the question (logged with who)."""
    if yes:
        log.info("confirmation_waived", action=action, operator=operator())
        return None
    if not interactive:
        raise Refused(
            f"{action} needs a confirmation and there is no terminal to ask on: "
            f"run it from a terminal, or pass --yes to confirm in advance",
            f"{gate} (no terminal)",
        )
    try:
        answer = ask(prompt)
    except EOFError:
        answer = ""
    log.info("confirmation_answered", action=action, operator=operator())
    return answer
