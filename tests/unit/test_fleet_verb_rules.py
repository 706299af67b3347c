"""The fleet's rules for every verb, as tables: the exit code of a fleet run from its
targets' outcomes, and a deploy's outcome per target over its two phases."""

from __future__ import annotations

import pytest

from predeploy.commands import fleet
from predeploy.commands.deploy_fleet import _both, _reloads
from predeploy.commands.fleet_report import FleetReport, TargetResult


def target(name: str, outcome: str, code: int = 0, applied: tuple[str, ...] = ()) -> TargetResult:
    return TargetResult(
        name, "rest", name, "h:5432", outcome, list(applied), "why" if code else None, code
    )


def report(command: str, *targets: TargetResult) -> FleetReport:
    return FleetReport("r1", "prod", command, "predeploy.fleet.toml", list(targets))


@pytest.mark.parametrize(
    ("command", "targets", "code"),
    [
        ("status", [("up to date", 0), ("behind", 1)], 1),
        ("status", [("behind", 1), ("failed", 3)], 3),  # a failure outranks a finding
        ("lint", [("lint errors", 1), ("clean", 0)], 1),
        ("drift", [("drifted", 1), ("failed", 3), ("failed", 2)], 2),  # read-only: the lowest
        ("migrate", [("failed", 6), ("failed", 5)], 5),  # a change: 5 when they disagree
        ("migrate", [("failed", 6), ("failed", 6)], 6),
        ("health", [("unhealthy", 7), ("healthy", 0)], 7),
        ("rollback", [("rolled back", 0), ("not applied", 0)], 0),
        ("maintenance", [("needs attention", 1), ("failed", 4)], 4),
        ("migrate", [("failed", 5), ("interrupted", 143)], 143),
    ],
)
def test_the_exit_code_of_a_fleet_run(
    command: str, targets: list[tuple[str, int]], code: int
) -> None:
    done = report(command, *(target(f"t{i}", o, c) for i, (o, c) in enumerate(targets)))
    error = fleet._error(done)
    assert (error.exit_code if error is not None else 0) == code


def test_a_read_only_verbs_error_points_at_the_table_not_a_runbook() -> None:
    error = fleet._error(report("status", target("a", "behind", 1)))
    assert error is not None
    assert "see the table above" in error.message
    assert "runbook" not in error.message


def test_a_verbs_own_words_are_counted() -> None:
    counts = report("lint", target("a", "clean"), target("b", "lint errors", 1)).counts()
    assert counts == {"clean": 1, "lint errors": 1}


@pytest.mark.parametrize(
    ("pre", "stopped", "reloads"),
    [
        (["applied", "up to date", "skipped"], None, True),
        (["applied", "failed"], None, True),  # within the budget: the failure is reported
        (["failed", "not started"], "group canary failed", False),
        (["applied", "interrupted"], "stopped by SIGTERM", False),
        (["not started", "not started"], None, False),  # refused before any target
    ],
)
def test_a_deploy_reloads_only_after_a_pre_phase_the_budget_took(
    pre: list[str], stopped: str | None, reloads: bool
) -> None:
    done = report("deploy", *(target(f"t{i}", o) for i, o in enumerate(pre)))
    done.stopped = stopped
    assert _reloads(done) is reloads


def test_a_deploys_target_over_both_phases() -> None:
    """Applied by either phase; the post phase's failure is the target's; its runbook
    undoes the post-deploy migrations first; a target the post phase skipped keeps its
    pre-deploy outcome."""
    pre = report(
        "deploy",
        target("a", "up to date"),
        target("b", "applied", applied=("1_users",)),
        target("c", "failed", 5),
    )
    pre.targets[1].runbook = ["undo 1_users"]
    post = report(
        "deploy",
        target("a", "applied", applied=("2_body",)),
        target("b", "failed", 5),
    )
    post.targets[0].runbook = ["undo 2_body"]
    post.targets[1].runbook = ["resolve 2_body"]
    both = {t.name: t for t in _both(pre, post).targets}
    assert (both["a"].outcome, both["a"].applied) == ("applied", ["2_body"])
    assert (both["b"].outcome, both["b"].applied, both["b"].exit_code) == ("failed", ["1_users"], 5)
    assert both["b"].runbook == ["resolve 2_body", "undo 1_users"]
    assert (both["c"].outcome, both["c"].exit_code) == ("failed", 5)
