"""What a deploy's runbook says, by where the deploy stopped: a table of reports, no
database (commands/deploy_runbook.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from predeploy.commands import deploy_runbook
from predeploy.commands import migrate_report as workflow
from predeploy.commands.deploy import DeployReport
from predeploy.commands.steps import Step
from predeploy.config.settings import load_settings
from predeploy.errors import HealthCheckFailed, Interrupted, MigrationError, PredeployError
from predeploy.migrate.outcome import Applied


def _deploy(
    steps: list[tuple[str, str]],
    *,
    pre: tuple[str, ...] = (),
    post: list[str] | None = None,
    post_error: PredeployError | None = None,
    error: PredeployError | None = None,
) -> DeployReport:
    """A deploy's report: its steps, what each phase applied (each with a down.sql)."""
    report = DeployReport(env="prod", app="web", steps=[Step(n, o, 0.1) for n, o in steps])

    def phase(names: list[str], phase: str) -> workflow.Report:
        done = workflow.Report(env="prod", phase=phase)
        done.applied = [Applied(n, 0.1, True, 1) for n in names]
        done.pending = [workflow.Pending(n, 1, True, True, "ab" * 32, phase) for n in names]
        return done

    report.migrate = phase(list(pre), "pre-deploy")
    if post is not None:
        report.post = phase(post, "post-deploy")
        report.post.error = post_error
    report.error = error or post_error
    return report


SIGTERM_RELOAD = Interrupted("stopped by SIGTERM while deploying (reload)", 143)


@pytest.mark.parametrize(
    ("report", "first", "has", "lacks"),
    [
        pytest.param(
            _deploy([("pm2", "ok"), ("reload", "interrupted")], pre=["1_a"], error=SIGTERM_RELOAD),
            "# pm2 reload web was in flight when this deploy was interrupted: pm2 may have",
            ["true describe web", "true reload web", "predeploy health --env prod"],
            ["not reloaded"],
            id="signal-in-reload",
        ),
        pytest.param(
            _deploy([("pm2", "ok"), ("restart", "failed")], error=HealthCheckFailed("timeout")),
            "# pm2 restart web was in flight when it failed: pm2 may have restarted web",
            [" describe web"],
            ["not restarted", "restore"],
            id="failed-restart",
        ),
        pytest.param(
            _deploy([("pm2", "ok")], error=MigrationError("1_a failed")),
            "# web was not reloaded: pm2 still runs the release it ran before this deploy",
            [],
            ["describe", "restore"],
            id="no-reload",
        ),
        pytest.param(
            _deploy([("pm2", "ok"), ("reload", "ok")], post=[], post_error=MigrationError("x")),
            "# the new release of web is live and healthy; a post-deploy migration failed,",
            ["# the post-deploy phase changed nothing in the database", "--post-deploy"],
            ["restore", "rollback", "pre-deploy migration(s)"],
            id="post-failed-nothing-changed",
        ),
        pytest.param(
            _deploy([("pm2", "ok"), ("reload", "ok")], pre=["1_a", "2_b"], post=["3_c"]),
            "# before the reload, this deploy applied 2 pre-deploy migration(s): 1_a, 2_b",
            ["--migrations 3_c --yes", "true reload web", "--migrations 2_b,1_a --yes"],
            ["not healthy"],
            id="two-phases-ok",
        ),
    ],
)
def test_a_deploys_runbook_says_where_it_stopped(
    tmp_path: Path,
    report: DeployReport,
    first: str,
    has: list[str],
    lacks: list[str],
) -> None:
    """What the deploy's runbook says follows where it stopped (a table of reports)."""
    values = {"DATABASE_URL": "postgresql://u:pw@db.example/app", "PREDEPLOY_PM2_BIN": "/bin/true"}
    settings = load_settings("prod", tmp_path, values)
    lines = deploy_runbook.lines(settings, report)
    assert lines[0].startswith(first), lines
    text = "\n".join(lines)
    assert all(part in text for part in has), text
    assert not any(part in text for part in lacks), text
    order = [next(i for i, line in enumerate(lines) if part in line) for part in has]
    assert order == sorted(order), text
