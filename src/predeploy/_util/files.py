"""Reading a file the operator gave us: its content, or one ConfigError line that names the
file, says why it cannot be read ("Permission denied", "not UTF-8 text ...") and what to do.
"""

from __future__ import annotations

from pathlib import Path

from predeploy.errors import ConfigError

__all__ = ["read_bytes", "read_text", "reason"]


def reason(exc: OSError | UnicodeDecodeError) -> str:
    """Why a file cannot be read, in a few words."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    return exc.strerror or str(exc)


def read_bytes(path: Path, *, shown: str | None = None, advice: str = "") -> bytes:
    """``path``'s bytes; ConfigError "cannot read <shown>: <why><advice>" otherwise."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {shown or path}: {reason(exc)}{advice}") from None


def read_text(
    path: Path, *, shown: str | None = None, advice: str = "", encoding: str = "utf-8-sig"
) -> str:
    """``path`` as text (a UTF-8 byte-order mark dropped); ConfigError as ``read_bytes``,
    also when it is not text in ``encoding``."""
    data = read_bytes(path, shown=shown, advice=advice)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {shown or path}: {reason(exc)}{advice}") from None
