"""What importing a module pulls in, seen from a fresh interpreter (a subprocess: in the
suite's own process every module is imported already)."""

from __future__ import annotations

import subprocess
import sys


def test_the_session_factory_knows_no_settings_and_no_embedded_server() -> None:
    """db.connect (the session factory) imports neither the settings nor the embedded
    server: the target decides where sessions go (the old connect <-> embedded cycle)."""
    code = (
        "import sys, predeploy.db.connect; "
        "print(sorted(m for m in ('predeploy.config.settings', 'predeploy.db.embedded',"
        " 'predeploy.db.target') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
