"""Developer sessions: `nox` runs tests, lint and typecheck."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "imports"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite against a real PostgreSQL (see tests/conftest.py)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def coverage(session: nox.Session) -> None:
    """The test suite under coverage, subprocesses included; prints the report (slower:
    every `python -m predeploy` a test starts is measured too)."""
    session.install("-e", ".[test]")
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting rules."""
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "bench", "noxfile.py", "tasks.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the library."""
    session.install("-e", ".[test]")
    session.run("mypy", "src")


@nox.session
def imports(session: nox.Session) -> None:
    """import-linter: the layers of DESIGN.md (.importlinter); a lower layer never imports a
    higher one."""
    session.install("-e", ".", "import-linter")
    session.run("lint-imports")


@nox.session
def bench(session: nox.Session) -> None:
    """bench/all.py: predeploy against the psql floor, dbmate and yoyo (not run by default;
    the bench installs the peers into a virtualenv of its own)."""
    session.install("-e", ".")
    session.run("python", "bench/all.py", *session.posargs)
