"""Redaction as a table: what a secret looks like in free text, URLs, SQL and conninfo, and
what of a setting's URL counts as a secret."""

from __future__ import annotations

import pytest

from predeploy._util.redact import Scrubber, notify_url_secrets, shown_url

SECRETS = ["s3cr3t-pw/+", "tok"]

# text -> text once masked, with SECRETS given
MASKED = [
    ("postgresql://app:s3cr3t-pw/+@db:5432/app", "postgresql://app:***@db:5432/app"),
    ("postgresql://app:any-other@db/app", "postgresql://app:***@db/app"),  # its place alone
    ("said s3cr3t-pw/+ twice: s3cr3t-pw/+", "said *** twice: ***"),
    ("encoded s3cr3t-pw%2F%2B and s3cr3t-pw/%2B", "encoded *** and ***"),
    ("ALTER ROLE app PASSWORD 'hunter22'", "ALTER ROLE app PASSWORD '***'"),
    ("host=db password=hunter22 dbname=app", "host=db password=*** dbname=app"),
    ("tok is short: never masked in free text", "tok is short: never masked in free text"),
    ("nothing secret here", "nothing secret here"),
]


@pytest.mark.parametrize(("text", "shown"), MASKED)
def test_scrubber_masks_every_form_of_a_secret(text: str, shown: str) -> None:
    """A secret as written or percent-encoded, and whatever stands in a password's place."""
    assert Scrubber(SECRETS).text(text) == shown


def test_scrubber_masks_inside_nested_values() -> None:
    """Dicts and lists, however nested, keep their shape; numbers and None stay as they are."""
    value = {"a": ["x s3cr3t-pw/+", {"b": "s3cr3t-pw/+"}], "n": 3, "none": None}
    assert Scrubber(SECRETS).value(value) == {"a": ["x ***", {"b": "***"}], "n": 3, "none": None}


# a URL -> as messages show it
SHOWN = [
    ("https://u:pw@h/x?token=zz&schema=public", "https://u:***@h/x?token=***&schema=***"),
    ("https://h/health", "https://h/health"),
    ("postgresql://app@db/app", "postgresql://app@db/app"),
]


@pytest.mark.parametrize(("url", "shown"), SHOWN)
def test_shown_url_masks_the_password_and_every_query_value(url: str, shown: str) -> None:
    assert shown_url(url) == shown


# a notification URL -> what of it is secret (scheme and host stay visible)
NOTIFY = [
    ("slack://T1/B2/C3", {"T1", "B2", "C3"}),
    ("json://127.0.0.1:8080/hook/TOKEN", {"TOKEN"}),
    ("ntfy://TOKEN@ntfy.sh/topic", {"TOKEN", "topic"}),
    ("mailto://user:pw@example.com", {"pw"}),
]


@pytest.mark.parametrize(("url", "secret"), NOTIFY)
def test_what_of_a_notification_url_is_secret(url: str, secret: set[str]) -> None:
    assert set(notify_url_secrets(url)) == secret
