"""Secrets out of text: the one redaction module, applied where text leaves the process.

A ``Scrubber`` is built once per run from every secret the settings know (``Settings.
scrubber``) and masks at each sink: the log processors (stderr and the run's log file),
the final error line and the results on stdout (``cli.output``), the runbook, the audit row,
notification titles and bodies. Nothing upstream masks message by message.

What it masks:

- every known secret, as written, percent-encoded and JSON/repr-escaped: the database
  URLs' passwords, each notification URL's tokens (``notify_url_secrets``), the password
  and query values of every other ``PREDEPLOY_*`` URL (``url_secrets``), PGPASSWORD;
- whatever stands in a secret's place, known or not: ``scheme://user:PASSWORD@``,
  ``PASSWORD '...'`` in SQL (``CREATE ROLE``/``ALTER ROLE``, ``ENCRYPTED`` or not) and
  libpq's ``password=...``.

A long secret (12 characters or more) is replaced wherever it appears; a shorter one only
where it stands as a word of its own, so that a weak password ("postgres") does not mangle
every word containing it ("postgresql://", a migration named ``20230529_user_add_pw``). A
secret under 4 characters is not masked in free text at all: it cannot be told apart from
ordinary words and digits (a password "1" masked everywhere would turn "1 migration" into
"*** migration" and so reveal it); the positional rules above still mask it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

__all__ = ["MASK", "MIN_SECRET", "Scrubber", "notify_url_secrets", "shown_url", "url_secrets"]

MIN_SECRET = 4  # shorter secrets are not masked in free text (see the module's doc)
_WHOLE_WORD_BELOW = 12
MASK = "***"  # what stands in a secret's place, in every message and file
_MASK = MASK

_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@?#]*:)[^\s/@]+@")
# PASSWORD 'x' / E'x' / $tag$x$tag$ in SQL (an unterminated literal: to the end of its line)
_SQL_PASSWORD = re.compile(
    r"(?P<head>\bPASSWORD\s+)(?:E?'(?:[^'\\\n]|''|\\.)*(?:'|$)|\$(?P<tag>\w*)\$.*?(?:\$(?P=tag)\$|$))",
    re.IGNORECASE | re.MULTILINE,
)
_CONNINFO_PASSWORD = re.compile(
    r"(?P<head>\b(?:PG|ssl)?password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&'\",;)]+)", re.IGNORECASE
)
# path segments and option values of notification URLs that name no secret (and among them
# predeploy's own words: masking "deploy" of jsons://hooks.example.com/deploy would mangle
# every command line that names the verb)
_PLAIN_WORDS = frozenset(
    {
        *("api", "hook", "hooks", "webhook", "webhooks", "services", "service", "bot"),
        *("notify", "notification", "notifications", "message", "messages", "send"),
        *("incoming", "events", "event", "alert", "alerts", "callback", "endpoint"),
        *("json", "xml", "form", "text", "html", "markdown", "get", "post", "put"),
        *("yes", "no", "true", "false", "on", "off"),
        *("predeploy", "deploy", "deploys", "deployment", "deployments", "migrate"),
        *("migrations", "rollback", "restore", "maintenance", "backup", "backups"),
        *("status", "check", "health", "drift", "lint", "resolve"),
        *("prod", "production", "staging", "dev", "ops", "team", "teams", "channel"),
    }
)


class Scrubber:
    """Replaces the secrets it was given, and whatever stands in a password's place."""

    def __init__(self, secrets: Iterable[str] = (), *, everywhere: bool = False) -> None:
        """``everywhere``: every secret, however short, is masked wherever it appears (for
        a text known to be about the secrets, such as libpq's complaint about a URL)."""
        self._everywhere = everywhere
        self._secrets: tuple[str, ...] = ()
        self.extend(secrets)

    def extend(self, secrets: Iterable[str]) -> None:
        """Masks ``secrets`` too, from now on, in every sink this scrubber serves (a fleet
        learns its targets' passwords after the run's logging started)."""
        self._secrets = tuple(dict.fromkeys((*self._secrets, *secrets)))
        least, whole_word_below = (1, 0) if self._everywhere else (MIN_SECRET, _WHOLE_WORD_BELOW)
        forms = {f for s in self._secrets if len(s) >= least for f in _forms(s, least)}
        ordered = sorted(forms, key=len, reverse=True)  # a secret inside another goes whole
        self._long = [s for s in ordered if len(s) >= whole_word_below]
        short = [_as_word(s) for s in ordered if len(s) < whole_word_below]
        self._short = re.compile("|".join(short)) if short else None

    def text(self, text: str) -> str:
        """``text`` with every secret masked."""
        text = _URL_PASSWORD.sub(rf"\g<head>{_MASK}@", text)
        text = _SQL_PASSWORD.sub(rf"\g<head>'{_MASK}'", text)
        text = _CONNINFO_PASSWORD.sub(rf"\g<head>{_MASK}", text)
        for secret in self._long:
            if secret in text:
                text = text.replace(secret, _MASK)
        if self._short is not None:
            text = self._short.sub(_MASK, text)
        return text

    def value(self, value: Any) -> Any:
        """``value`` (str, or dicts and lists of them, however nested) with secrets masked;
        other objects become their masked ``str``."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.text(str(value))


def _forms(secret: str, least: int = MIN_SECRET) -> set[str]:
    """The secret as written, percent-encoded (each way), and escaped as JSON and repr do."""
    found = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    found |= {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    found.add(repr(secret)[1:-1])
    return {f for f in found if len(f) >= least}


def _as_word(secret: str) -> str:
    """A pattern for ``secret`` standing as a word of its own (only its word-character ends
    need a non-word neighbour: "@abc" is masked in "x@abc")."""
    before = r"(?<!\w)" if re.match(r"\w", secret[0]) else ""
    after = r"(?!\w)" if re.match(r"\w", secret[-1]) else ""
    return before + re.escape(secret) + after


def _with_decoded(values: Iterable[str]) -> list[str]:
    return [form for v in values if v for form in (v, unquote(v))]


def url_secrets(url: str) -> list[str]:
    """What to mask of a URL setting (the health URL, any other ``PREDEPLOY_*`` URL): the
    password of its userinfo and every query value (``?key=...``, ``?token=...``)."""
    parts = urlsplit(url)
    password = parts.netloc.rpartition("@")[0].partition(":")[2]
    values = [p.rpartition("=")[2] for p in re.split(r"[&;]", parts.query)]
    return _with_decoded([password, *[v for v in values if v.lower() not in _PLAIN_WORDS]])


def notify_url_secrets(url: str) -> list[str]:
    """What to mask of a notification URL: what ``url_secrets`` masks, the user when it has
    no password (``ntfy://TOKEN@host``), the host when it is no host name (``slack://TOKEN/``,
    ``discord://ID/TOKEN``, ``tgram://BOT:TOKEN/CHAT``) and every path segment that is not a
    plain endpoint word (``json://host/hook/TOKEN``). Scheme and host stay visible."""
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    found = url_secrets(url)
    if user and not colon:
        found += _with_decoded([user])
    if hostport.startswith("["):  # an IPv6 address
        host, _, port = hostport.partition("]")
        rest = [port.removeprefix(":")] if port else []
    else:
        host, *rest = hostport.split(":")
    if not _is_host_name(host):
        found += _with_decoded([host])
    found += _with_decoded([p for p in rest if not (p.isdigit() and len(p) <= 5)])
    segments = [s for s in parts.path.split("/") if s and s.lower() not in _PLAIN_WORDS]
    return found + _with_decoded(segments)


def _is_host_name(host: str) -> bool:
    host = host.strip("[]")
    if "." in host or host.lower() == "localhost" or not host:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def shown_url(url: str) -> str:
    """``url`` as messages show it: its password and every query value masked."""
    parts = urlsplit(url)
    netloc = _URL_PASSWORD.sub(rf"\g<head>{_MASK}@", f"{parts.scheme}://{parts.netloc}")
    netloc = netloc.removeprefix(f"{parts.scheme}://")
    pairs = [p.partition("=") for p in parts.query.split("&")] if parts.query else []
    query = "&".join(f"{k}={_MASK}" if eq else _MASK for k, eq, _v in pairs)
    return urlunsplit(parts._replace(netloc=netloc, query=query))
