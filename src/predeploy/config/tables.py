"""Reading ``predeploy.fleet.toml``'s tables: the file itself, and the checks every table
and entry of it gets (known keys, names, non-empty strings), each failure one line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from predeploy.errors import ConfigError

__all__ = ["FILE", "TABLES", "known", "load", "name_of", "text", "unique"]

FILE = "predeploy.fleet.toml"
TABLES = {"fleet", "targets", "hosts", "deploy"}  # the file's top-level tables
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def load(path: Path) -> dict[str, Any] | None:
    """The file's tables; None when there is no such file; ConfigError when unreadable."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        return tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{FILE} is not valid TOML: {exc}") from None


def known(table: dict[str, Any], keys: set[str], label: str, what: str = "key") -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        listed = ", ".join(sorted(keys))
        raise ConfigError(f"{label}: unknown {what} {unknown[0]!r} (known: {listed})")


def name_of(entry: dict[str, Any], label: str) -> str:
    """The entry's ``name``: letters, digits, '_', '.' or '-' (it names files and flags)."""
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{label}: name must be letters, digits, '_', '.' or '-' (at most 63), got {name!r}"
        )
    return name


def text(value: Any, label: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{label} must be a non-empty string")
    return value


def unique(names: list[str], label: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{FILE}: {label} {name!r} is named twice")
        seen.add(name)
