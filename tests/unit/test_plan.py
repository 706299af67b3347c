"""The pure core of a migrate run, as tables: the status of each migration from its history
rows (Prisma's rules), and the plan the policy and the phase make of that status."""

from __future__ import annotations

from pathlib import Path

import pytest

from predeploy.config.policy import make_policy
from predeploy.errors import MigrationError
from predeploy.migrate.discovery import POST_DEPLOY, PRE_DEPLOY, Migration
from predeploy.migrate.plan import make_plan
from predeploy.migrate.status import compare
from support.statuses import migration, row, status_of

PRE, POST = PRE_DEPLOY, POST_DEPLOY


# rows of one migration (oldest first) -> its state
STATES = [
    ([], "pending"),
    (["applied"], "applied"),
    (["failed"], "failed"),
    (["rolled_back"], "pending"),
    (["rolled_back", "applied"], "applied"),
    (["applied", "failed"], "failed"),  # a failed row wins over an applied one
    (["edited"], "edited"),
]


@pytest.mark.parametrize(("kinds", "state"), STATES)
def test_state_of_a_migration_from_its_rows(tmp_path: Path, kinds: list[str], state: str) -> None:
    """Prisma's rules: failed wins; the latest applied row decides applied or edited; all
    rolled back is pending again."""
    m = migration(tmp_path, "1_a")
    rows = [row(m, "applied", "f" * 64) if k == "edited" else row(m, k) for k in kinds]
    (entry,) = compare([m], rows).entries
    assert (entry.name, entry.state) == ("1_a", state)


def test_rows_without_a_folder_are_missing_unless_rolled_back(tmp_path: Path) -> None:
    """A live row whose folder is gone is `missing`; a rolled-back one is history only."""
    status = compare([], [row("9_gone", "applied"), row("8_undone", "rolled_back")])
    assert [(e.name, e.state) for e in status.entries] == [("9_gone", "missing")]
    assert not status.up_to_date


def test_a_crlf_checkout_of_an_applied_file_is_not_an_edit(tmp_path: Path) -> None:
    """Line endings changed by git on another machine: the same migration."""
    m = migration(tmp_path, "1_a", "SELECT 1;\nSELECT 2;\n")
    recorded = row(m, "applied")
    (tmp_path / "1_a" / "migration.sql").write_bytes(b"SELECT 1;\r\nSELECT 2;\r\n")
    assert compare([Migration("1_a", tmp_path / "1_a")], [recorded]).up_to_date


# "name:state ..." (post: a pending post-deploy one), env, phase ->
# (runs now, waits, refused, warnings, stops after the ones before the other phase's)
PLANS = [
    ("1_a:applied 2_b:pending", "staging", PRE, ("2_b", "", False, 0, False)),
    ("1_a:failed 2_b:pending", "staging", PRE, ("2_b", "", True, 0, False)),
    ("1_a:edited 2_b:pending", "staging", PRE, ("2_b", "", True, 0, False)),
    ("1_a:edited 2_b:pending", "prod", PRE, ("2_b", "", True, 0, False)),
    ("1_a:edited 2_b:pending", "dev", PRE, ("2_b", "", False, 1, False)),
    ("1_a:missing 2_b:pending", "prod", PRE, ("2_b", "", False, 1, False)),
    ("1_a:pending 2_b:post", "prod", PRE, ("1_a", "2_b", False, 0, False)),
    ("1_a:applied 2_b:post", "prod", POST, ("2_b", "", False, 0, False)),
    ("1_a:post 2_b:pending", "prod", POST, ("1_a", "2_b", False, 0, False)),
    # a pre-deploy migration pending before the post-deploy one: nothing runs
    ("1_a:pending 2_b:post", "prod", POST, ("", "1_a 2_b", True, 0, False)),
    # a post-deploy one ahead of a pre-deploy one: what is before it runs, then the run stops
    ("1_a:pending 2_p:post 3_c:pending", "prod", PRE, ("1_a", "2_p 3_c", False, 0, True)),
    ("1_p:post 2_c:pending", "prod", PRE, ("", "1_p 2_c", True, 0, False)),
]


@pytest.mark.parametrize(("spec", "env", "phase", "expected"), PLANS)
def test_plan_of_a_status(
    tmp_path: Path,
    spec: str,
    env: str,
    phase: str,
    expected: tuple[str, str, bool, int, bool],
) -> None:
    """What runs now, what waits for the other phase, what refuses the run, what is only
    said, and whether the run stops after the migrations before the other phase's."""
    policy = make_policy(env, protected=None, allow_no_backup=False)
    plan = make_plan(status_of(tmp_path, spec), policy, phase)
    pending, later, refused, warnings, stops = expected
    assert [m.name for m in plan.pending] == pending.split()
    assert [m.name for m in plan.later] == later.split()
    assert bool(plan.refusals) == refused
    assert len(plan.warnings) == warnings
    assert (plan.stop is not None) == stops
    if refused:
        with pytest.raises(MigrationError):
            plan.refuse()
    else:
        plan.refuse()  # nothing to refuse: returns


def test_an_empty_migration_is_refused_naming_its_file(tmp_path: Path) -> None:
    """A migration.sql with no statement (the template left as it was) refuses the run."""
    m = migration(tmp_path, "1_a", "-- nothing yet\n")
    policy = make_policy("staging", protected=None, allow_no_backup=False)
    plan = make_plan(compare([m], []), policy)
    (refusal,) = plan.refusals
    assert str(m.sql_path) in str(refusal) and "has no SQL statements" in str(refusal)
