"""The suite's throwaway cluster (tests/support/cluster.py), which is not in the wheel."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.cluster import ThrowawayCluster, free_port

__all__ = ["ThrowawayCluster", "free_port", "free_port_in"]


def free_port_in(ports: range, *, besides: tuple[int, ...] = ()) -> int:
    """The first port of ``ports`` free on 127.0.0.1 (not one of ``besides``)."""
    for port in ports:
        if port in besides:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")
