"""`predeploy deploy --fleet`: the fleet's pre-deploy migrations, ONE reload of the (one)
app, then the fleet's post-deploy migrations; a canary that fails stops before the reload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.fleet_site import FleetSite, fleet_site, outcomes
from support.pm2 import Pm2App
from support.servers import Server

pytestmark = pytest.mark.slow

USERS = ("CREATE TABLE users (id int PRIMARY KEY);", "DROP TABLE users;")
BODY = (
    "-- predeploy: post-deploy\nALTER TABLE users ADD COLUMN body text;",
    "ALTER TABLE users DROP COLUMN body;",
)


@pytest.fixture
def site(pg_server: Server, pm2_app: Pm2App) -> Iterator[FleetSite]:
    """Tenants a (the canary) and b, the app `web` run by pm2; 1_users (pre-deploy) and
    2_body (post-deploy) on disk."""
    groups = {"a": "canary", "b": "rest"}
    fleet = 'max_fail = 0\ngroups = ["canary", "rest"]\n'
    with fleet_site(pg_server, pm2_app.project, ("a", "b"), fleet=fleet, groups=groups) as s:
        app = {
            "PREDEPLOY_PM2_APP": "web",
            "PREDEPLOY_PM2_BIN": str(pm2_app.pm2_bin),
            "PREDEPLOY_HEALTHCHECK_URL": f"{pm2_app.url}/health",
            "PREDEPLOY_DEPLOY_WAIT": "20s",
        }
        with (s.project / ".env.staging").open("a") as env_file:
            env_file.write("".join(f"{k}={v}\n" for k, v in app.items()))
        s.env.update(pm2_app.environ)
        s.write("1_users", *USERS)
        s.write("2_body", *BODY)
        yield s


def restarts(app: Pm2App) -> int:
    return sum(int(str(p["restarts"])) for p in app.processes())


def test_pre_phase_then_one_reload_then_post_phase(site: FleetSite, pm2_app: Pm2App) -> None:
    """Both tenants get 1_users before the reload and 2_body after it; pm2 reloads once
    (each of its two processes restarts once); one runbook undoes post before pre."""
    before = restarts(pm2_app)
    code, data = site.fleet("deploy", "--yes")
    assert code == 0, data
    assert [s["name"] for s in data["steps"]] == [
        "pm2",
        "reload",
        "healthy",
        "healthy after post-deploy",
    ]
    assert outcomes(data) == {"a": "applied", "b": "applied"}
    assert {t["name"]: t["applied"] for t in data["targets"]} == {
        "a": ["1_users", "2_body"],
        "b": ["1_users", "2_body"],
    }
    assert data["phases"] == {"pre_deploy": {"applied": 2}, "post_deploy": {"applied": 2}}
    assert restarts(pm2_app) - before == len(pm2_app.processes())  # one reload, not one per tenant
    assert site.applied("a") == site.applied("b") == ["1_users", "2_body"]
    runbook = data["runbook"]

    def at(text: str) -> int:
        return next(i for i, line in enumerate(runbook) if text in line)

    # the undo's order: every post-deploy undo, the release back, every pre-deploy undo
    assert max(at("--target a --migrations 2_body"), at("--target b --migrations 2_body")) < at(
        "reload web"
    )
    assert at("reload web") < min(
        at("--target a --migrations 1_users"), at("--target b --migrations 1_users")
    )
    assert runbook == Path(data["runbook_path"]).read_text().splitlines()
    again, data = site.fleet("deploy", "--yes")  # nothing pending: still one reload
    assert again == 0, data
    assert outcomes(data) == {"a": "up to date", "b": "up to date"}


def test_a_failed_canary_stops_before_the_reload(site: FleetSite, pm2_app: Pm2App) -> None:
    """The canary's pre-deploy migration fails: b is not started, the app is not
    reloaded, no post-deploy migration runs anywhere; exit 5."""
    site.execute("a", "CREATE TABLE users (id int)")  # 1_users fails on a
    pids = {p["pid"] for p in pm2_app.processes()}
    code, data = site.fleet("deploy", "--yes")
    assert code == 5, data
    assert outcomes(data) == {"a": "failed", "b": "not started"}
    assert [s["name"] for s in data["steps"]] == ["pm2"]
    assert {p["pid"] for p in pm2_app.processes()} == pids
    assert site.applied("b") == []
    assert data["phases"]["post_deploy"] is None
