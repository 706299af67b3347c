"""Notifications cost nothing at start-up: apprise is imported only to send."""

from __future__ import annotations

import subprocess
import sys


def test_apprise_is_not_imported_until_there_is_something_to_send() -> None:
    """Importing notify, and a send without URLs, leave apprise unloaded."""
    code = (
        "import sys; from predeploy.integrations import notify\n"
        "e = notify.Event(command='migrate', env='prod', outcome='failed')\n"
        "assert notify.send(notify.NotifyConfig(), e) == []\n"
        "assert 'apprise' not in sys.modules and 'requests' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
