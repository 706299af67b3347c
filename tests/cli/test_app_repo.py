"""A new user's path: a Prisma app repository, predeploy installed non-editable into a venv.

The app is laid out as Prisma's docs make it (prisma/schema.prisma with a directUrl,
prisma/migrations, package.json, a .env with ?schema=public and its own LOG_DIR), and
nothing of it is edited: `predeploy migrate` runs in it from a subfolder, then the real
Prisma CLI's `migrate status`, with the same URL, must say the database is up to date.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from support.prisma import prisma_run
from support.servers import Server
from support.terminal import run_in_terminal

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "corpora" / "langfuse" / "migrations"
SCHEMA = """\
datasource db {
  provider  = "postgresql"
  url       = env("DATABASE_URL")
  directUrl = env("DIRECT_URL")
}

generator client {
  provider = "prisma-client-js"
}
"""
POST = "-- predeploy: post-deploy\nALTER TABLE users ADD COLUMN retired_at timestamp(3);\n"


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """predeploy built as a wheel and installed (not editable) into a venv of its own."""
    folder = tmp_path_factory.mktemp("installed")
    wheels = folder / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(wheels)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    (wheel,) = wheels.glob("predeploy-*.whl")
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return venv / "bin" / "predeploy"


def _database(server: Server, name: str) -> str:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.url(name)


@pytest.fixture
def app(tmp_path: Path, pg_server: Server, database_url: str) -> Iterator[Path]:
    """A Prisma app: 30 real migrations and a post-deploy one, DIRECT_URL the working URL,
    DATABASE_URL a pooler URL on a closed port, the app's own LOG_DIR and PORT."""
    root = tmp_path / "app"
    migrations = root / "prisma" / "migrations"
    migrations.mkdir(parents=True)
    for folder in sorted(CORPUS.iterdir())[:30]:
        if folder.is_dir():
            shutil.copytree(folder, migrations / folder.name)
    (migrations / "29990101000000_retire_users").mkdir()
    (migrations / "29990101000000_retire_users" / "migration.sql").write_text(POST)
    (root / "prisma" / "schema.prisma").write_text(SCHEMA)
    (root / "package.json").write_text('{"name": "app", "version": "1.0.0", "private": true}\n')
    (root / "src").mkdir()
    (root / ".env").write_text(
        'DATABASE_URL="postgresql://app:pooled@127.0.0.1:1/app?schema=public&pgbouncer=true'
        '&connection_limit=1"\n'
        f'DIRECT_URL="{database_url}?schema=public"\n'
        f"LOG_DIR={tmp_path / 'app-logs'}\nPORT=3000\n"
    )
    yield root


def _predeploy(
    program: Path, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREDEPLOY_", "PG"))}
    clean = {k: v for k, v in clean.items() if k not in ("DATABASE_URL", "DIRECT_URL")}
    return subprocess.run(
        [str(program), *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        start_new_session=True,
    )


@pytest.mark.slow
def test_prisma_app_migrates_unchanged_and_prisma_agrees(
    installed: Path, app: Path, prisma: Path, database_url: str, tmp_path: Path
) -> None:
    """From a subfolder of the app: both phases apply through DIRECT_URL while DATABASE_URL
    (a pooler) is down; the app's files and its LOG_DIR are untouched; Prisma agrees."""
    before = {p: p.read_bytes() for p in app.rglob("*") if p.is_file()}
    pre = _predeploy(installed, app / "src", "migrate", "--env", "staging", "--yes", "--json")
    assert pre.returncode == 0, pre.stderr
    assert len(json.loads(pre.stdout)["applied"]) == 30
    post = _predeploy(installed, app, "migrate", "--env", "staging", "--yes", "--post-deploy")
    assert post.returncode == 0, post.stderr
    assert {p: p.read_bytes() for p in before} == before  # no file of the app edited
    assert not (tmp_path / "app-logs").exists()  # the app's LOG_DIR is the app's
    assert list((app / "logs").glob("predeploy-staging-*.log"))
    with psycopg.connect(database_url) as conn:
        count = conn.execute("SELECT count(*) FROM public._prisma_migrations").fetchone()
    assert count == (31,)
    status = prisma_run(
        prisma, f"{database_url}?schema=public", app / "prisma" / "migrations", "status"
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Database schema is up to date" in status.stdout


@pytest.mark.slow
def test_schema_parameter_puts_tables_and_history_in_that_schema(
    installed: Path, app: Path, prisma: Path, pg_server: Server, tmp_path: Path
) -> None:
    """?schema=app: the tables and the history live in schema app, for both tools."""
    url = _database(pg_server, f"s_{tmp_path.name[-12:].lower().replace('-', '_')}")
    env_file = app / ".env"
    env_file.write_text(
        "\n".join(
            line if not line.startswith("DIRECT_URL=") else f'DIRECT_URL="{url}?schema=app"'
            for line in env_file.read_text().splitlines()
        )
        + "\n"
    )
    done = _predeploy(installed, app, "migrate", "--env", "staging", "--yes")
    assert done.returncode == 0, done.stderr
    with psycopg.connect(url) as conn:
        schemas = dict(
            conn.execute(
                "SELECT table_schema, count(*) FROM information_schema.tables"
                " WHERE table_schema NOT IN ('pg_catalog', 'information_schema') GROUP BY 1"
            ).fetchall()
        )
    assert set(schemas) == {"app"} and schemas["app"] > 3
    post = _predeploy(installed, app, "migrate", "--env", "staging", "--yes", "--post-deploy")
    assert post.returncode == 0, post.stderr
    status = prisma_run(prisma, f"{url}?schema=app", app / "prisma" / "migrations", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Database schema is up to date" in status.stdout


def test_the_question_goes_to_the_terminal_when_stdout_is_a_file(
    installed: Path, app: Path, tmp_path: Path
) -> None:
    """migrate --env staging --json > out.json on a terminal: asked there, out.json clean."""
    out = tmp_path / "out.json"
    program = f"{installed} migrate --env staging --json > {out}"
    code, screen = run_in_terminal(
        ["/bin/sh", "-c", program],
        cwd=app,
        env={k: v for k, v in os.environ.items() if not k.startswith("PREDEPLOY_")},
        answer="y",
        prompt=b"[y/N]",
    )
    assert code == 0, screen
    assert "About to apply 30 migration(s)" in screen
    report = json.loads(out.read_text())
    assert len(report["applied"]) == 30 and "Go on?" not in out.read_text()


def test_init_adds_once_and_changes_nothing_the_second_time(installed: Path, app: Path) -> None:
    """init adds predeploy's .env.example lines, .gitignore entries and
    scripts/run-migrations.sh; run again, nothing."""
    (app / ".gitignore").write_text("node_modules/\n.env\n")
    first = _predeploy(installed, app, "init", "--json")
    assert first.returncode == 0, first.stderr
    assert len(json.loads(first.stdout)["changed"]) == 3
    files = (app / ".gitignore", app / ".env.example", app / "scripts" / "run-migrations.sh")
    after = {p: p.read_bytes() for p in files}
    assert b"node_modules/\n.env\n" in after[app / ".gitignore"]
    second = _predeploy(installed, app, "init", "--json")
    assert json.loads(second.stdout)["changed"] == []
    assert {p: p.read_bytes() for p in after} == after
    assert "deploy --env prod --yes" in json.loads(second.stdout)["post_deploy"]


def test_init_ignores_every_file_that_holds_a_secret(installed: Path, app: Path) -> None:
    """After init, git ignores .env, every .env.<env> but .env.example, .venv/,
    .predeploy/ and what predeploy writes (asked of git itself)."""
    subprocess.run(["git", "init", "-q"], cwd=app, check=True, timeout=60)
    assert _predeploy(installed, app, "init").returncode == 0
    secret = [".env", ".env.prod", ".env.staging", ".env.local", ".venv/bin/python"]
    ours = [".predeploy/cache/x", ".pgdata/PG_VERSION", "backups/prod/x.dump", "logs/x.log"]
    kept = [".env.example", "scripts/run-migrations.sh", "prisma/schema.prisma"]
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", *secret, *ours, *kept],
        cwd=app,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert checked.stdout.split() == [*secret, *ours]


def test_scripts_run_migrations_works_in_the_app_unchanged(
    installed: Path, app: Path, database_url: str
) -> None:
    """`./scripts/run-migrations.sh dev`, as written by init, migrates with the app's
    .venv; without predeploy anywhere it exits 2 saying how to install it."""
    assert _predeploy(installed, app, "init").returncode == 0
    script = app / "scripts" / "run-migrations.sh"
    assert os.access(script, os.X_OK)
    (app / ".venv").symlink_to(installed.parents[1])
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(app)}
    done = subprocess.run(
        ["./scripts/run-migrations.sh", "dev", "--json"],
        cwd=app,
        env=clean,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["applied"]) == 30
    with psycopg.connect(database_url) as conn:
        count = conn.execute("SELECT count(*) FROM public._prisma_migrations").fetchone()
    assert count == (30,)
    (app / ".venv").unlink()
    done = subprocess.run(
        [str(script), "dev"],
        cwd=app / "src",
        env=clean,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("run-migrations: predeploy not found")
    assert "python3 -m venv .venv && .venv/bin/pip install" in done.stderr


def test_the_installed_wheel_ships_the_repositorys_scripts(installed: Path, app: Path) -> None:
    """scripts/ links into the package's examples (one copy); the wheel installs the same
    bytes where init says; init's systemd units pass systemd-analyze verify."""
    data = json.loads(_predeploy(installed, app, "init", "--json").stdout)
    shipped = Path(data["examples"])
    assert shipped.is_relative_to(installed.parents[1])
    scripts = REPO / "scripts"
    names = sorted(p.name for p in scripts.iterdir())
    assert {"run-migrations.sh", "pm2-post-deploy.sh", "crontab.example"} <= set(names)
    assert {"predeploy-maintenance.service", "predeploy-maintenance.timer"} <= set(names)
    for name in names:
        assert (scripts / name).is_symlink()
        assert (scripts / name).resolve() == REPO / "src" / "predeploy" / "examples" / name
        assert (shipped / name).read_bytes() == (scripts / name).read_bytes()
    service = data["systemd"]["predeploy-maintenance.service"]
    assert f"WorkingDirectory={app}\n" in service
    assert f"ExecStart={installed} maintenance --env prod --json\n" in service
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the units were not verified")
    units = app / "units"
    units.mkdir()
    for name, text in data["systemd"].items():
        (units / name).write_text(text)
    verified = subprocess.run(
        ["systemd-analyze", "verify", *(str(p) for p in sorted(units.iterdir()))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stderr


def test_the_ecosystem_example_installs_predeploy_as_the_readme_does() -> None:
    """The ecosystem file's post-setup hook is the README's install line, word for word."""
    readme = (REPO / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("python3 -m venv .venv && "))
    hook = subprocess.run(
        [
            "node",
            "-e",
            "console.log(require(process.argv[1]).deploy.production['post-setup'])",
            str(REPO / "scripts" / "ecosystem.config.js"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert hook == line.split("  #")[0].strip()
