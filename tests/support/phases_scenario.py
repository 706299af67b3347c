"""A release that renames a column, deployed while requests keep coming (test and bench).

The app (two pm2 cluster processes) answers every request by reading one column of
``items``: the column its release reads is in the file ``column``, read when a process
starts, so a reload switches a process to the new release. The old release reads ``a``,
the new one ``b``. Deployed in two phases (add ``b`` pre-deploy, drop ``a`` post-deploy)
every request is served; as one pre-deploy migration (rename ``a`` to ``b``) the old
processes fail until the reload has replaced them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

DB_SERVER_JS = """\
const http = require('http');
const fs = require('fs');
const { Pool } = require('pg');
const column = fs.readFileSync('column', 'utf8').trim();
const pool = new Pool({ connectionString: process.env.APP_DATABASE_URL, max: 2 });
const server = http.createServer(async (req, res) => {
  try {
    const r = await pool.query(`SELECT ${column} AS v FROM items LIMIT 1`);
    res.writeHead(200, {'content-type': 'text/plain', 'connection': 'close', 'x-pid': process.pid});
    res.end(String(r.rows[0].v));
  } catch (e) {
    res.writeHead(500, {'content-type': 'text/plain', 'connection': 'close'});
    res.end(String(e.message));
  }
}).listen(process.env.PORT);
// a graceful stop, as pm2's reload expects: finish what was accepted, then exit
process.on('SIGINT', () => server.close(() => pool.end().then(() => process.exit(0))));
"""

TWO_PHASES = {
    "2_add_b": "ALTER TABLE items ADD COLUMN b text;\nUPDATE items SET b = a;\n",
    "3_drop_a": "-- predeploy: post-deploy\nALTER TABLE items DROP COLUMN a;\n",
}
ONE_PHASE = {"2_rename_a_to_b": "ALTER TABLE items RENAME COLUMN a TO b;\n"}
FIRST = {
    "1_items": (
        "CREATE TABLE items (id int PRIMARY KEY, a text);\nINSERT INTO items VALUES (1, 'x');\n"
    )
}


@dataclass
class Requests:
    """A loop of GETs against the app, counting what failed."""

    url: str
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            self.sent += 1
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:  # noqa: S310
                    response.read()
            except urllib.error.HTTPError as exc:
                self.failed += 1
                self.errors.append(f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:80]}")
            except (urllib.error.URLError, OSError) as exc:
                self.failed += 1
                self.errors.append(str(exc)[:80])


def write(folder: Path, scripts: dict[str, str]) -> None:
    for name, text in scripts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "migration.sql").write_text(text)


def predeploy(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "predeploy", *args],
        cwd=project,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        start_new_session=True,
    )


def deploy_under_load(
    project: Path, env: dict[str, str], url: str, release: dict[str, str]
) -> Requests:
    """Write the new release (its migrations, column b), deploy it while requests run."""
    write(project / "migrations", release)
    (project / "column").write_text("b\n")
    load = Requests(f"{url}/")
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    try:
        done = predeploy(project, env, "deploy", "--env", "staging", "--yes")
    finally:
        time.sleep(0.5)  # a few requests against the release once it is live
        load.stop.set()
        thread.join(timeout=10)
    assert done.returncode == 0, done.stdout + done.stderr
    return load


def _wait_for_processes(url: str, count: int, timeout: float = 30) -> None:
    """Until ``count`` different processes have answered (each read its column at start)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only {len(seen)} of {count} app processes answer"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:  # noqa: S310
                seen.add(response.headers.get("x-pid") or "")
        except OSError:
            time.sleep(0.05)


@contextmanager
def running_app(
    project: Path, pm2_bin: Path, node_modules: Path, database_url: str, port: int, home: Path
) -> Iterator[tuple[dict[str, str], str]]:
    """The first release migrated and running under pm2 (cluster, 2 processes); yields the
    environment for predeploy and the app's URL. pm2 is killed afterwards."""
    examples = Path(__file__).parents[2] / "src" / "predeploy" / "examples"
    (project / "ecosystem.config.js").write_text((examples / "ecosystem.config.js").read_text())
    (project / "server.js").write_text(DB_SERVER_JS)
    (project / "column").write_text("a\n")
    write(project / "migrations", FIRST)
    pm2_env = {
        "PM2_HOME": str(home),
        "PORT": str(port),
        "APP_DATABASE_URL": database_url,
        "NODE_PATH": str(node_modules),
    }
    url = f"http://127.0.0.1:{port}"
    env = {
        "DATABASE_URL": database_url,
        "PREDEPLOY_PM2_APP": "web",
        "PREDEPLOY_PM2_BIN": str(pm2_bin),
        "PREDEPLOY_HEALTHCHECK_URL": f"{url}/health",
        **pm2_env,
    }
    migrated = predeploy(project, env, "migrate", "--env", "staging", "--yes")
    assert migrated.returncode == 0, migrated.stderr
    pm2 = [str(pm2_bin)]
    started = subprocess.run(
        [*pm2, "start", str(project / "ecosystem.config.js")],
        cwd=project,
        env={**os.environ, **pm2_env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    try:
        _wait_for_processes(url, 2)
        yield env, url
    finally:
        subprocess.run(
            [*pm2, "kill"],
            env={**os.environ, **pm2_env},
            capture_output=True,
            timeout=60,
            check=False,
        )
