"""Secrets out of text: one scrubber for log events, notifications and reports.

Every known password is replaced by ``***`` in its plain and percent-encoded forms, and
any ``scheme://user:password@`` gets its password masked. A long secret is replaced
wherever it appears; a short one (under 8 characters: "pw", "postgres") only where it
stands as a word of its own, so that a weak password does not mangle every identifier
that happens to contain it (a migration named ``20230529_user_add_pw``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = ["Scrubber"]

_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@?#]*:)[^\s/@]+@")
_SHORT = 8


class Scrubber:
    """Replaces the secrets it was given in text and in nested values."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {f for s in secrets if s for f in (s, quote(s, safe=""), quote(s), quote_plus(s))}
        ordered = sorted(forms, key=len, reverse=True)  # a secret inside another goes whole
        self._long = [s for s in ordered if len(s) >= _SHORT]
        short = [re.escape(s) for s in ordered if len(s) < _SHORT]
        self._short = (
            re.compile(r"(?<![A-Za-z0-9_])(?:" + "|".join(short) + r")(?![A-Za-z0-9_])")
            if short
            else None
        )

    def text(self, text: str) -> str:
        """``text`` with every secret masked."""
        text = _URL_PASSWORD.sub(r"\g<head>***@", text)
        for secret in self._long:
            if secret in text:
                text = text.replace(secret, "***")
        if self._short is not None:
            text = self._short.sub("***", text)
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
