"""What `predeploy status` prints for a status, as a table: each state's mark, the verdict,
and a long history's summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from predeploy.cli.render import render_status
from predeploy.migrate.status import compare
from support.statuses import status_of

# "name:state ..." -> (lines that must appear, the last line)
STATUS = [
    ("1_a:applied", ["1_a  applied", "2026-01-01 00:00:00 UTC"], "1 applied: up to date"),
    ("1_a:applied 2_b:pending", ["2_b  pending"], "1 applied, 1 pending: needs attention"),
    ("1_a:failed", ["1_a  FAILED"], "1 failed: needs attention"),
    ("1_a:edited", ["1_a  EDITED since applied"], "1 edited: needs attention"),
    ("1_a:missing", ["1_a  MISSING on disk"], "1 missing: needs attention"),
    ("1_a:post", ["1_a  pending (post-deploy)"], "1 pending: needs attention"),
]


@pytest.mark.parametrize(("spec", "shown", "verdict"), STATUS)
def test_status_table(tmp_path: Path, spec: str, shown: list[str], verdict: str) -> None:
    text = render_status(status_of(tmp_path, spec))
    for fragment in shown:
        assert fragment in text, text
    assert text.splitlines()[-1] == verdict


def test_no_migrations_at_all_says_so() -> None:
    assert render_status(compare([], [])) == "no migrations on disk and none recorded"


def test_a_long_history_is_summarised_unless_whole(tmp_path: Path) -> None:
    """Beyond a screenful: the counts, the latest applied, what is not applied; `--all`
    (whole) lists every migration."""
    spec = " ".join(f"{n:03d}_m:applied" for n in range(60)) + " 999_new:pending"
    status = status_of(tmp_path, spec)
    short = render_status(status, whole=False)
    assert short.splitlines()[0] == "61 migration(s): 60 applied, 1 pending"
    assert "latest applied: 059_m" in short and "pending (1):" in short
    assert "000_m" not in short
    assert short.endswith("(every migration: --all)")
    whole = render_status(status)
    assert "000_m" in whole and len(whole.splitlines()) == 63
