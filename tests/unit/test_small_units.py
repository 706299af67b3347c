"""Small pure pieces: the health URL check against a real loopback HTTP server (Basic
auth, redaction, no proxy), pruning old logs and runbooks, the size formatter."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from predeploy._util import log as log_mod
from predeploy._util import units
from predeploy.commands.health import check_http


@pytest.fixture
def basic_auth_server() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """An HTTP server on 127.0.0.1 that answers 200 only with Basic alice:s3cret."""
    seen: list[dict[str, Any]] = []
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
            self.send_response(200 if self.headers.get("Authorization") == expected else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_health_url_credentials_go_as_basic_auth_and_loopback_skips_the_proxy(
    basic_auth_server: tuple[int, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """user:password in the health URL is Basic auth, shown redacted; http_proxy pointing at
    a dead proxy does not matter for a loopback URL."""
    port, seen = basic_auth_server
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    check = check_http(f"http://alice:s3cret@127.0.0.1:{port}/health", timeout=2, retries=1)
    assert check.ok, check.detail
    assert "s3cret" not in check.detail and "alice:***@" in check.detail
    assert seen == [
        {"path": "/health", "auth": "Basic " + base64.b64encode(b"alice:s3cret").decode()}
    ]


def test_maintenance_prunes_old_logs_and_runbooks_only(tmp_path: Path) -> None:
    """Run logs and runbooks older than the kept days go; other files stay."""
    logs = tmp_path / "logs"
    logs.mkdir()
    old = [logs / "predeploy-prod-20200101T000000Z-abc.log", logs / "runbook-prod-abc.txt"]
    kept = [logs / "predeploy-prod-20261201T000000Z-def.log", logs / "notes.txt"]
    for path in [*old, *kept]:
        path.write_text("x\n")
    past = time.time() - 100 * 86400
    for path in [*old, logs / "notes.txt"]:
        os.utime(path, (past, past))
    assert sorted(log_mod.prune(logs, 90)) == sorted(old)
    assert all(p.exists() for p in kept)
    assert log_mod.prune(logs, 0) == []


def test_unreachable_health_url_is_named_without_its_password() -> None:
    check = check_http("http://ops:s3cret@127.0.0.1:9/health", timeout=1, retries=1, pause=0)
    assert not check.ok
    assert "s3cret" not in check.detail
    assert "ops:***@127.0.0.1:9" in check.detail


def test_one_size_formatter() -> None:
    """Binary units, labelled as such."""
    assert [units.size(n) for n in (0, 1023, 1536, 5 * 1024**2, 3 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]
