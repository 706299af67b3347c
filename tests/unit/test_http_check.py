"""The HTTP health check's tries: counted, paced by ``poll``, the last answer reported."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from predeploy.commands.health import check_http
from support.web import serving


@contextmanager
def _serving(codes: list[int]) -> Iterator[tuple[str, list[int]]]:
    """A loopback server answering ``codes`` in turn (the last one from then on); yields its
    URL and the codes it sent, one per request it got."""
    sent: list[int] = []

    def status(_path: str) -> int:
        sent.append(codes[min(len(sent), len(codes) - 1)])
        return sent[-1]

    with serving(status) as url:
        yield f"{url}/health", sent


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
