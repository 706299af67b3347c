"""_util.redact.Scrubber: the one masking; ``everywhere`` for a text about the secrets."""

from __future__ import annotations

import pytest

from predeploy._util.redact import MASK, Scrubber
from predeploy.config.dburl import parse_url
from predeploy.errors import ConfigError


@pytest.mark.parametrize(
    ("secrets", "everywhere", "text", "shown"),
    [
        (["ab"], False, "token ab here", "token ab here"),  # too short for free text
        (["ab"], True, "token ab here", f"token {MASK} here"),
        (["ab"], True, "xaby", f"x{MASK}y"),  # inside a word, too
        (["p%zz"], True, 'bad "p%zz"', f'bad "{MASK}"'),
        (["hunter22"], False, "hunter22 and hunter222", f"{MASK} and hunter222"),  # a word
        (["hunter22"], True, "hunter222", f"{MASK}2"),
        ([], True, "postgresql://u:pw@h/db", f"postgresql://u:{MASK}@h/db"),  # by its place
    ],
)
def test_masks(secrets: list[str], everywhere: bool, text: str, shown: str) -> None:
    assert Scrubber(secrets, everywhere=everywhere).text(text) == shown


def test_an_invalid_url_never_shows_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_url("postgresql://user:p%zz@localhost/db", "DATABASE_URL")
    assert "p%zz" not in str(caught.value) and "DATABASE_URL" in str(caught.value)


def test_the_shown_url_masks_the_password() -> None:
    assert str(parse_url("postgresql://user:secret@localhost:5432/db", "X")) == (
        f"postgresql://user:{MASK}@localhost:5432/db"
    )
