"""Before a protected fleet's one confirmation: what each target has pending, read
concurrently (one history read each), so that the question says what will change, and a
fleet with nothing pending is not asked at all (as a single run with nothing pending)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from predeploy.commands.fleet_targets import Placed
from predeploy.errors import PredeployError

__all__ = ["pending_counts", "summary"]


def pending_counts(todo: list[Placed], concurrency: int) -> dict[str, int | None]:
    """Each target's number of pending migrations (None: it could not be read; its own run
    will say why)."""
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="scan") as pool:
        found = {p.name: pool.submit(_pending, p) for p in todo}
    return {name: future.result() for name, future in found.items()}


def _pending(p: Placed) -> int | None:
    from predeploy.commands.status import current  # noqa: PLC0415 (loaded: see above)

    try:
        return len(current(p.settings).having("pending"))
    except PredeployError:
        return None


def summary(counts: dict[str, int | None]) -> str:
    """``3 of 200 target(s) have 7 pending migration(s) (acme, globex, ...)``."""
    behind = [n for n, c in counts.items() if c]
    unread = [n for n, c in counts.items() if c is None]
    pending = sum(c or 0 for c in counts.values())
    names = ", ".join(behind[:10]) + (", ..." if len(behind) > 10 else "")
    text = f"{len(behind)} of {len(counts)} target(s) have {pending} pending migration(s)"
    text += f" ({names})" if behind else ""
    if unread:
        text += f"; {len(unread)} could not be read ({', '.join(unread[:5])}): each says why"
    return text
