"""Readers for setting values: durations, counts, flags, names, lists, URLs.

Each takes the raw text and the variable's name and raises ConfigError (exit 2)
with a message that names the variable and says what is accepted. Values that
may hold a secret (URLs) are never echoed.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from pathlib import Path

from predeploy.errors import ConfigError

__all__ = [
    "NOTIFY_EVENTS",
    "closest",
    "connect_timeout",
    "count",
    "days",
    "flag",
    "http_url",
    "notify_on",
    "notify_urls",
    "parse_duration",
    "pg_bin_dir",
    "positive",
    "protected",
    "table",
    "variable_name",
]

NOTIFY_EVENTS = ("failure", "prod-change", "success", "drift")
LIBPQ_FLOOR = 2  # libpq waits at least 2 s for a connection (connect_timeout 1 means 2)
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_duration(value: str, variable: str) -> float:
    """Seconds from a PostgreSQL-style duration: `2s`, `500ms`, `1min`, `1.5` (seconds)."""
    match = _DURATION.match(value)
    if match is None:
        raise ConfigError(
            f"{variable}={value!r} is not a duration: use a number of seconds or a value "
            f"with a unit such as 500ms, 2s, 1min, 1h"
        )
    number, unit = match.groups()
    return float(number) * _UNIT_SECONDS[unit or "s"]


def positive(raw: str, variable: str) -> float:
    seconds = parse_duration(raw, variable)
    if seconds <= 0:
        raise ConfigError(f"{variable}={raw!r} must be greater than zero")
    return seconds


def connect_timeout(raw: str, variable: str) -> tuple[int, str | None]:
    """(whole seconds libpq really waits, a note when that differs from ``raw``)."""
    asked = positive(raw, variable)
    waits = max(LIBPQ_FLOOR, math.ceil(asked))
    if waits == asked:
        return waits, None
    return waits, (
        f"{variable}={raw}: libpq waits whole seconds and at least {LIBPQ_FLOOR}, so "
        f"connections wait up to {waits} s"
    )


def count(raw: str, variable: str, *, minimum: int = 0) -> int:
    text = raw.strip().replace("_", "").replace(",", "")
    if not text.isdigit() or int(text) < minimum:
        what = "0 or more" if minimum == 0 else f"{minimum} or more"
        raise ConfigError(f"{variable}={raw!r} must be a whole number ({what})")
    return int(text)


def flag(raw: str | None, variable: str) -> bool:
    value = protected(raw, variable)
    return bool(value)


def protected(raw: str | None, variable: str) -> bool | None:
    """1/true/yes/on, 0/false/no/off, or None when unset."""
    if raw is None:
        return None
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{variable}={raw!r} must be 1 or 0 (true/false, yes/no, on/off)")


def days(raw: str | None, variable: str) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0 or math.isnan(value) or math.isinf(value):
        raise ConfigError(f"{variable}={raw!r} must be a number of days greater than zero")
    return value


def table(name: str, variable: str) -> str:
    if not _TABLE.match(name):
        raise ConfigError(
            f"{variable}={name!r} must be a plain table name "
            f"(letters, digits, underscores; at most 63)"
        )
    return name


def variable_name(raw: str | None, variable: str) -> str | None:
    """The name of an environment variable (PREDEPLOY_URL_VAR=DATABASE_URL_UNPOOLED)."""
    if raw is None:
        return None
    if not _NAME.match(raw.strip()):
        raise ConfigError(
            f"{variable}={raw!r} must be the name of a variable, such as DIRECT_URL "
            f"(letters, digits, underscores)"
        )
    return raw.strip()


def http_url(raw: str | None, variable: str) -> str | None:
    if raw is None:
        return None
    if not re.match(r"^https?://[^/\s]+", raw):
        scheme = raw.split("://", 1)[0] if "://" in raw else "no scheme"
        raise ConfigError(  # the value is not echoed: it may hold a password
            f"{variable} is not an http(s) URL ({scheme}): use e.g. http://127.0.0.1:3000/health"
        )
    return raw


def pg_bin_dir(raw: str | None, variable: str, root: Path) -> Path | None:
    """A folder that exists and holds pg_dump."""
    if raw is None:
        return None
    folder = Path(raw).expanduser()
    folder = folder if folder.is_absolute() else root / folder
    if not folder.is_dir():
        raise ConfigError(f"{variable}={raw} is not a folder: name the folder holding pg_dump")
    if not (folder / "pg_dump").is_file():
        raise ConfigError(
            f"{variable}={raw} holds no pg_dump: name the folder of the PostgreSQL client "
            f"programs (e.g. /usr/lib/postgresql/16/bin)"
        )
    return folder


def notify_urls(raw: str | None, variable: str) -> tuple[str, ...]:
    """Comma-separated notification URLs (apprise's); never echoed, they hold tokens."""
    urls = tuple(u.strip() for u in (raw or "").split(",") if u.strip())
    for index, url in enumerate(urls, start=1):
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://\S", url):
            raise ConfigError(
                f"{variable}: URL {index} of {len(urls)} has no scheme: write each as "
                f"scheme://..., e.g. mailto://user:pass@example.com, separated by commas"
            )
    return urls


def notify_on(raw: str | None, variable: str) -> tuple[str, ...]:
    """The events that notify, in a fixed order; `all` is every one."""
    names = [n.strip().lower() for n in (raw or "failure,prod-change").split(",") if n.strip()]
    allowed = (*NOTIFY_EVENTS, "all")
    for name in names:
        if name not in allowed:
            raise ConfigError(
                f"{variable} has {name!r}{closest(name, allowed)}: use a comma list of "
                f"{', '.join(allowed)}"
            )
    chosen = set(NOTIFY_EVENTS) if "all" in names else set(names)
    return tuple(e for e in NOTIFY_EVENTS if e in chosen)


def closest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)`` when a known name is close to ``name``, else empty."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""
