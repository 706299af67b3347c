"""The HTTP health check's tries: counted, paced by ``poll``, the last answer reported."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from predeploy.commands.health import check_http


@contextmanager
def _serving(codes: list[int]) -> Iterator[tuple[str, list[int]]]:
    """A loopback server answering ``codes`` in turn (the last one from then on); yields its
    URL and the codes it sent, one per request it got."""
    sent: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = codes[min(len(sent), len(codes) - 1)]
            sent.append(code)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health", sent
    finally:
        server.shutdown()
        server.server_close()


def test_a_failing_url_gets_exactly_its_retries() -> None:
    with _serving([503]) as (url, sent):
        check = check_http(url, timeout=2, retries=3, pause=0.01)
    assert sent == [503, 503, 503]
    assert not check.ok
    assert check.detail.endswith("HTTP 503 after 3 tries (timeout 2s each)")
    assert check.data == {"attempts": 3}


def test_the_first_2xx_ends_the_tries() -> None:
    with _serving([502, 503, 204]) as (url, sent):
        check = check_http(url, timeout=2, retries=5, pause=0.01)
    assert sent == [502, 503, 204]
    assert check.ok
    assert check.data == {"status": 204, "attempts": 3}
    assert check.detail.startswith("GET ") and ": 204 in " in check.detail
