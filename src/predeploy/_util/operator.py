"""Who is running predeploy, for the logs, the audit trail and notifications."""

from __future__ import annotations

import getpass
import os

__all__ = ["operator"]


def operator() -> str:
    """The person behind sudo (SUDO_USER) rather than the user sudo made them."""
    behind_sudo = os.environ.get("SUDO_USER")
    if behind_sudo:
        return behind_sudo
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
