"""One way to show a size: binary units, labelled as such (KiB, MiB, GiB, TiB)."""

from __future__ import annotations

__all__ = ["size"]

_UNITS = ("KiB", "MiB", "GiB", "TiB")


def size(n: int | float) -> str:
    """``size(1536)`` is '1.5 KiB'; below 1 KiB, bytes: '512 B'."""
    if n < 1024:
        return f"{int(n)} B"
    value = float(n)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:,.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover
