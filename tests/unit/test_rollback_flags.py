"""rollback's --migrations / --steps, as the CLI reads them (pure)."""

from __future__ import annotations

import pytest

from predeploy.cli.runs import undo_choice
from predeploy.errors import ConfigError


@pytest.mark.parametrize(
    ("migrations", "steps", "chosen"),
    [
        (None, None, (None, None)),
        ("1_a, 2_b,", None, (["1_a", "2_b"], None)),
        (None, "3", (None, 3)),
        (None, " 2", (None, 2)),
    ],
)
def test_names_or_a_count(
    migrations: str | None, steps: str | None, chosen: tuple[list[str] | None, int | None]
) -> None:
    """Names split on commas (blanks dropped), or a whole number of steps."""
    assert undo_choice(migrations, steps) == chosen


@pytest.mark.parametrize(
    ("migrations", "steps", "said"),
    [
        ("1_a", "1", "give one of --migrations NAMES or --steps N, not both"),
        (" , ", None, "--migrations is empty"),
        (None, "0", "--steps '0' must be a whole number, 1 or more"),
        (None, "two", "--steps 'two' must be a whole number"),
        (None, "-1", "--steps '-1' must be a whole number"),
    ],
)
def test_a_bad_choice_is_a_usage_error(
    migrations: str | None, steps: str | None, said: str
) -> None:
    """Both, an empty list or a count that is not 1 or more: exit 2, saying which."""
    with pytest.raises(ConfigError) as caught:
        undo_choice(migrations, steps)
    assert said in caught.value.message and caught.value.exit_code == 2
