"""pm2: a real pm2 from the npm registry, running a real Node app."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.cluster import free_port

__all__ = ["SERVER_JS", "Pm2App", "install_pm2", "running_app"]

SERVER_JS = """\
const http = require('http');
const fs = require('fs');
http.createServer((req, res) => {
  const sick = req.url !== '/health' || fs.existsSync('sick');
  res.writeHead(sick ? 503 : 200, {'content-type': 'text/plain'});
  res.end(String(process.pid));
}).listen(process.env.PORT);
"""

_ECOSYSTEM = Path(__file__).parents[2] / "src" / "predeploy" / "examples" / "ecosystem.config.js"


def install_pm2(folder: Path) -> Path:
    """pm2 installed with npm into ``folder``; without node and npm the test skips saying so
    (it fails in CI, where .ci/run installs them)."""
    if not (shutil.which("node") and shutil.which("npm")) and not os.environ.get("CI"):
        pytest.skip("node/npm not installed: the pm2 tests need them (apt-get install nodejs npm)")
    try:
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "pm2@7"],
            cwd=folder,
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        pytest.fail(f"cannot install pm2 with npm (node and npm are needed): {detail}")
    return folder / "node_modules" / ".bin" / "pm2"


@dataclass(frozen=True)
class Pm2App:
    """A Node app run by pm2 from scripts/ecosystem.config.js, in its own PM2_HOME."""

    project: Path
    pm2_bin: Path
    environ: dict[str, str]  # PM2_HOME and PORT for whatever runs pm2
    url: str

    def pm2(self, *args: str) -> str:
        env = {**os.environ, **self.environ, "PM2_DISCRETE_MODE": "true"}
        done = subprocess.run(
            [str(self.pm2_bin), *args],
            check=False,
            cwd=self.project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def processes(self) -> list[dict[str, object]]:
        listed = json.loads(self.pm2("jlist"))
        return [
            {
                "pid": p["pid"],
                "restarts": p["pm2_env"]["restart_time"],
                "status": p["pm2_env"]["status"],
            }
            for p in listed
            if p["name"] == "web"
        ]


@contextmanager
def running_app(project: Path, pm2_bin: Path, home: Path) -> Iterator[Pm2App]:
    """``project`` with the ecosystem file's app `web` started by pm2 (killed after)."""
    shutil.copy(_ECOSYSTEM, project)
    (project / "server.js").write_text(SERVER_JS)
    port = free_port()
    app = Pm2App(
        project, pm2_bin, {"PM2_HOME": str(home), "PORT": str(port)}, f"http://127.0.0.1:{port}"
    )
    try:
        app.pm2("start", str(project / "ecosystem.config.js"))
        _wait_healthy(app.url)
        yield app
    finally:
        subprocess.run(
            [str(pm2_bin), "kill"],
            env={**os.environ, **app.environ},
            capture_output=True,
            timeout=60,
            check=False,
        )


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):  # noqa: S310
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
