"""Is a host name this machine's own loopback? (localhost, 127.0.0.0/8, ::1)"""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback"]


def is_loopback(host: str) -> bool:
    """True for localhost (and ``*.localhost``, ``localhost.localdomain``) or a loopback
    address, bracketed or with a zone (``[::1]``, ``fe80::1%lo``) or not."""
    name = host.strip().strip("[]").lower()
    if name in ("localhost", "localhost.localdomain") or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False
