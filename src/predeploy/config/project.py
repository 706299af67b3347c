"""Where the project is and which environments it has: the root (PREDEPLOY_ROOT, else
the nearest folder up holding prisma/, package.json, .git, .env or tasks.py), the env a
command runs in (--env, else PREDEPLOY_ENV, else dev), and the envs there are (the
built-in ones plus one per `.env.<name>` file)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from predeploy.errors import ConfigError

__all__ = ["BUILTIN_ENVS", "available_envs", "check_env", "env_name", "find_root"]

BUILTIN_ENVS = ("dev", "staging", "prod")
_NOT_ENVS = frozenset({"example", "sample", "template"})
_ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]*\Z")


def available_envs(root: Path) -> tuple[str, ...]:
    """The built-in environments plus one per `.env.<name>` file in ``root``."""
    found = {
        path.name.removeprefix(".env.")
        for path in root.glob(".env.*")
        if path.is_file() and _ENV_NAME.match(path.name.removeprefix(".env."))
    }
    extra = sorted(found - set(BUILTIN_ENVS) - _NOT_ENVS)
    return (*BUILTIN_ENVS, *extra)


def check_env(env: str, root: Path) -> None:
    """``env`` names an env of ``root``; else a ConfigError saying which names there are."""
    lower = env.lower()
    if not _ENV_NAME.match(lower) or not lower.isascii():
        raise ConfigError(
            f"bad environment name {env!r}: env names are lowercase letters, digits, '_' and "
            "'-', starting with a letter (--env NAME reads .env.NAME)"
        )
    envs = available_envs(root)
    if env in envs:
        return
    if lower != env:
        rename = f" (rename .env.{env} to .env.{lower})" if (root / f".env.{env}").is_file() else ""
        raise ConfigError(
            f"unknown environment {env!r}: env names are lowercase, use --env {lower}, which "
            f"reads .env.{lower}{rename}"
        )
    raise ConfigError(
        f"unknown environment {env!r}: available are {', '.join(envs)} "
        f"(create .env.{env} to add one)"
    )


_ROOT_MARKERS: tuple[tuple[str, Callable[[Path], bool]], ...] = (
    ("prisma", Path.is_dir),
    ("package.json", Path.is_file),
    (".git", Path.exists),
    (".env", Path.is_file),
    ("tasks.py", Path.is_file),
)


def find_root(start: Path, environ: Mapping[str, str] | None = None) -> Path:
    """The project root: PREDEPLOY_ROOT, else the nearest folder up from ``start`` holding
    prisma/, package.json, .git, .env or tasks.py, else ``start``."""
    environ = os.environ if environ is None else environ
    named = environ.get("PREDEPLOY_ROOT")
    if named:
        root = Path(named).expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(f"PREDEPLOY_ROOT={named} is not a folder: name the app's folder")
        return root
    start = start.resolve()
    for folder in (start, *start.parents):
        if folder.name == "prisma" and not _is_repository(folder) and _is_root(folder.parent):
            continue  # prisma/.env marks the app above it, not a project of its own
        if _is_root(folder):
            return folder
    return start


def _is_root(folder: Path) -> bool:
    return any(check(folder / name) for name, check in _ROOT_MARKERS)


def _is_repository(folder: Path) -> bool:
    """An app's own folder (a repository that happens to be named prisma), not Prisma's."""
    return (
        (folder / ".git").exists()
        or (folder / "package.json").is_file()
        or (folder / "prisma").is_dir()
    )


def env_name(requested: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The env a command runs in: ``--env``, else PREDEPLOY_ENV, else dev."""
    environ = os.environ if environ is None else environ
    if requested is not None:
        return requested  # "" too: an empty --env is a mistake, not dev (load_settings says)
    return environ.get("PREDEPLOY_ENV") or "dev"
