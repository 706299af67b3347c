"""Delivery through apprise: one daemon thread per URL, all bounded by one deadline.

apprise (and the requests it brings) is imported inside the worker threads, the
first time there is something to send, so that neither predeploy's start-up nor
the operation pays for it; a slow import counts against the timeout like a slow
receiver does.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

__all__ = ["Delivery", "Message", "deliver"]

Scrub = Callable[[str], str]

# The fields apprise's json:// plugin writes itself: ours never replace them.
_JSON_OWN = frozenset({"version", "title", "message", "attachments", "type"})


@dataclass(frozen=True)
class Delivery:
    """What became of one notification URL (its secrets redacted)."""

    url: str
    ok: bool
    detail: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Message:
    """A composed notification: already scrubbed of every secret."""

    title: str
    body: str
    kind: str  # the name of an apprise NotifyType: info, success, warning, failure
    fields: Mapping[str, Any] = field(default_factory=dict)  # extra json:// fields


class _Capture(logging.Handler):
    """apprise's warnings, routed to the worker thread that caused them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.by_thread: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        lines = self.by_thread.get(record.thread or 0)
        if lines is not None:
            with contextlib.suppress(Exception):  # a malformed record must not break the send
                lines.append(record.getMessage().strip().rstrip("."))

    @contextlib.contextmanager
    def this_thread(self) -> Iterator[list[str]]:
        ident, lines = threading.get_ident(), list[str]()
        self.by_thread[ident] = lines
        try:
            yield lines
        finally:
            self.by_thread.pop(ident, None)


_load_lock = threading.Lock()
_capture = _Capture()


@dataclass
class _Slot:
    """One URL's attempt; the worker fills ``result`` once, with one assignment."""

    url: str = field(repr=False)
    redacted: str
    result: Delivery | None = None


def deliver(
    urls: tuple[str, ...], message: Message, *, timeout: float, scrub: Scrub
) -> list[Delivery]:
    """Send ``message`` to every URL at once; returns after at most ``timeout`` seconds.

    Each URL has its own daemon thread: one hung receiver delays no other, and a
    worker still running at the deadline is left behind (it dies with the process).
    """
    slots = [_Slot(url, _redact_raw(url)) for url in urls]
    started = time.monotonic()
    workers = [
        threading.Thread(
            target=_attempt,
            args=(slot, message, timeout, scrub),
            name=f"predeploy-notify-{number}",
            daemon=True,
        )
        for number, slot in enumerate(slots)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(max(0.0, started + timeout - time.monotonic()))
    return [slot.result or _late(slot, timeout, time.monotonic() - started) for slot in slots]


def _late(slot: _Slot, timeout: float, seconds: float) -> Delivery:
    detail = f"no answer within {timeout:g} s (PREDEPLOY_NOTIFY_TIMEOUT); not waiting longer"
    return Delivery(slot.redacted, False, detail, seconds)


def _attempt(slot: _Slot, message: Message, timeout: float, scrub: Scrub) -> None:
    started = time.monotonic()
    try:
        ok, detail = _notify(slot, message, timeout, scrub)
    except Exception as exc:  # apprise or a plugin failed in a way it does not report itself
        ok, detail = False, scrub(f"{type(exc).__name__}: {exc}".splitlines()[0])
    slot.result = Delivery(slot.redacted, ok, detail, time.monotonic() - started)


def _notify(slot: _Slot, message: Message, timeout: float, scrub: Scrub) -> tuple[bool, str]:
    with _load_lock:  # apprise loads its plugins on first use: once, not in parallel
        apprise = _apprise()
        server = apprise.Apprise.instantiate(slot.url, asset=_asset(apprise))
    if server is None:
        return False, (
            "not a notification URL apprise can use: check its scheme and parts"
            " (PREDEPLOY_NOTIFY_URLS)"
        )
    slot.redacted = scrub(str(server.url(privacy=True)).split("?", 1)[0])
    server.socket_connect_timeout = min(float(server.socket_connect_timeout), timeout)
    server.socket_read_timeout = min(float(server.socket_read_timeout), timeout)
    _add_json_fields(server, message.fields)
    with _capture.this_thread() as warnings:
        ok = bool(
            server.notify(
                body=message.body,
                title=message.title,
                notify_type=getattr(apprise.NotifyType, message.kind.upper()),
                body_format=apprise.NotifyFormat.TEXT,
            )
        )
    if ok:
        return True, "delivered"
    return False, scrub("; ".join(warnings)) or "not delivered (the service gave no reason)"


def _apprise() -> ModuleType:
    import apprise  # noqa: PLC0415 - lazy: only a run with notification URLs pays for it

    logger = logging.getLogger("apprise")
    if _capture not in logger.handlers:
        logger.addHandler(_capture)
    return apprise


def _asset(apprise: ModuleType) -> Any:
    return apprise.AppriseAsset(app_id="predeploy", app_desc="predeploy")


def _add_json_fields(server: Any, fields: Mapping[str, Any]) -> None:
    """json:// and jsons:// carry the report's fields beside apprise's own.

    apprise's JSON plugin appends its ``payload_extras`` (the URL's ``:key=value``
    entries) to the body; ours go there too, after the operator's, and never
    over a field apprise writes or one the operator's URL renames.
    """
    extras = getattr(server, "payload_extras", None)
    if getattr(server, "secure_protocol", None) != "jsons" or not isinstance(extras, dict):
        return
    taken = _JSON_OWN | set(extras) | {v for v in extras.values() if isinstance(v, str)}
    extras.update({k: v for k, v in fields.items() if k not in taken})


def _redact_raw(url: str) -> str:
    """A URL apprise has not parsed yet: only its scheme, which holds no secret."""
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://…" if sep and scheme.isascii() and scheme.isalnum() else "(not a URL)"
