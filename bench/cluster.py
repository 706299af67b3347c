"""The suite's throwaway cluster (tests/support/cluster.py), which is not in the wheel."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.cluster import ThrowawayCluster, free_port

__all__ = ["ThrowawayCluster", "free_port"]
