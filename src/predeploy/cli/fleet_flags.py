"""The fleet's flags, shared by every verb that acts on a database: taken out of the
command line before invoke parses it, so that each task stays one line.

    --fleet            every target of predeploy.fleet.toml (see commands.fleet)
    --only A,B         ... only these targets      --group G   ... only this group
    --fresh            ... all of them, not only what the last run left
    --target NAME      one target of the fleet, as a single run (what runbooks paste)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from predeploy.errors import ConfigError

__all__ = ["FLEET_VERBS", "TARGET_VERBS", "FleetFlags", "current", "extract", "help_lines"]

FLEET_VERBS = frozenset(
    {
        *("migrate", "status", "lint", "drift", "backup", "rollback", "maintenance"),
        *("check", "health", "deploy"),
    }
)
TARGET_VERBS = FLEET_VERBS | {"deploy", "restore", "resolve", "backups", "notify-test"}
_VALUED = ("--only", "--group", "--target")


@dataclass(frozen=True)
class FleetFlags:
    task: str | None = None
    fleet: bool = False
    target: str | None = None
    only: tuple[str, ...] = ()
    group: str | None = None
    fresh: bool = False
    yes: bool = False
    dry_run: bool = False  # migrate --dry-run: nothing to confirm
    words: tuple[str, ...] = field(default=())  # the task's words as typed: to run it again


_current = FleetFlags()


def current() -> FleetFlags:
    return _current


def extract(argv: list[str], global_flags: tuple[str, ...] = ()) -> list[str]:
    """``argv`` without the fleet's flags (kept for ``current()``); ConfigError (a usage
    error) for a flag without its value or on a verb that takes none. ``global_flags``
    (-v, -q, ...) are left out of the words that run it again."""
    global _current  # noqa: PLW0603 (one command line per process)
    task_at = next((i for i, w in enumerate(argv[1:], 1) if not w.startswith("-")), None)
    if task_at is None:
        return argv
    kept, found = list(argv[: task_at + 1]), {}
    words = iter(argv[task_at + 1 :])
    for word in words:
        name, eq, value = word.partition("=")
        if name in _VALUED:
            found[name] = value if eq else next(words, None)
            given = found[name]
            if not given or given.startswith("-"):
                raise ConfigError(f"{name} needs a value (see predeploy {argv[task_at]} --help)")
        elif word in ("--fleet", "--fresh"):
            found[word] = "1"
        else:
            kept.append(word)
    typed = [w for w in argv[task_at:] if w not in global_flags]
    _current = _checked(argv[task_at], found, typed)
    return kept


def _checked(task: str, found: dict[str, str | None], typed: list[str]) -> FleetFlags:
    fleet, target = "--fleet" in found, found.get("--target")
    if fleet and task not in FLEET_VERBS:
        raise ConfigError(f"--fleet: predeploy {task} does not run over a fleet")
    if target is not None and task not in TARGET_VERBS:
        raise ConfigError(f"--target: predeploy {task} does not act on a fleet's target")
    if fleet and target is not None:
        raise ConfigError("give --fleet (every target) or --target NAME (one), not both")
    narrowing = [f for f in ("--only", "--group", "--fresh") if f in found]
    if narrowing and not fleet:
        raise ConfigError(f"{narrowing[0]} narrows a fleet run: add --fleet")
    only = tuple(n.strip() for n in (found.get("--only") or "").split(",") if n.strip())
    if "--only" in found and not only:
        raise ConfigError("--only is empty: name the targets, comma-separated")
    return FleetFlags(
        task=task,
        fleet=fleet,
        target=target,
        only=only,
        group=found.get("--group"),
        fresh="--fresh" in found,
        yes="--yes" in typed or "-y" in typed,
        dry_run="--dry-run" in typed or "-d" in typed,
        words=tuple(w for w in typed if w != "--fresh"),
    )


def help_lines(task: str) -> list[tuple[str, str]]:
    """The fleet's flags in ``predeploy TASK --help``."""
    lines = []
    if task in FLEET_VERBS:
        lines += [
            ("--fleet", "every target of predeploy.fleet.toml (see the README's Fleets)"),
            ("--only=A,B", "with --fleet: only these targets"),
            ("--group=G", "with --fleet: only this group"),
            ("--fresh", "with --fleet: every target, not only what the last run left"),
        ]
    if task in TARGET_VERBS:
        lines.append(("--target=NAME", "one target of predeploy.fleet.toml"))
    return lines
