"""`invoke check` against a real server, as a library call and from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from predeploy.commands.check import check
from predeploy.config.settings import load_settings
from support.cli import Cli
from support.servers import Server


def test_check_reports_server_facts(database_url: str, tmp_path: Path) -> None:
    """check reports version, database, user, latency, role and pg_dump."""
    settings = load_settings("staging", tmp_path, {"DATABASE_URL": database_url})
    result = check(settings)
    assert result.database == database_url.rsplit("/", 1)[1]
    assert result.user == "postgres"
    assert result.server_major >= 15
    assert result.in_recovery is False
    assert 0 < result.latency_ms < 1000
    assert result.pg_dump is not None and result.pg_dump.major == result.server_major
    assert "***" in result.url


def test_cli_check_json(cli: Cli, database_url: str) -> None:
    """`invoke check --json` prints one JSON object on stdout and exits 0."""
    done = cli("check", "--env", "staging", "--json", env={"DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["env"] == "staging"
    assert data["in_recovery"] is False
    assert data["pg_dump"]["path"].endswith("pg_dump")


def test_cli_prod_without_configuration_exits_2(cli: Cli) -> None:
    """No DATABASE_URL for prod: exit 2, one line, no traceback."""
    done = cli("check", "--env", "prod")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().count("\n") == 0
    assert "DATABASE_URL is not set for env 'prod'" in done.stderr


def test_cli_unknown_env_exits_2(cli: Cli) -> None:
    """--env nosuch: exit 2 naming the available envs."""
    done = cli("check", "--env", "nosuch")
    assert done.returncode == 2
    assert "available are dev, staging, prod" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_unreachable_exits_3_without_the_password(cli: Cli) -> None:
    """A closed port: exit 3 naming host:port; the password is printed nowhere."""
    done = cli(
        "check", "--env", "staging", env={"DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/x"}
    )
    assert done.returncode == 3
    assert "127.0.0.1:1" in done.stderr
    assert "secret" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_cli_wrong_password_exits_3_without_the_password(
    cli: Cli, pg_server: Server, project: Path
) -> None:
    """A wrong password: exit 3 'authentication failed'; not in output nor log file."""
    url = pg_server.url("postgres", password="Wr0ngPassw0rd")
    done = cli("check", "--env", "prod", env={"DATABASE_URL": url})
    assert done.returncode == 3
    assert "authentication failed" in done.stderr
    logs = "".join(p.read_text() for p in (project / "logs").glob("*.log"))
    assert "run_failed" in logs
    assert "Wr0ngPassw0rd" not in done.stdout + done.stderr + logs


def test_cli_logs_to_file_with_env_and_run_id(cli: Cli, database_url: str, project: Path) -> None:
    """Each run writes its JSON lines, with env and run id, to its own file
    logs/predeploy-<env>-<UTC time>-<run id>.log."""
    cli("check", "--env", "staging", env={"DATABASE_URL": database_url})
    cli("check", "--env", "staging", env={"DATABASE_URL": database_url})
    files = sorted((project / "logs").glob("predeploy-staging-*.log"))
    assert len(files) == 2
    for log_file in files:
        events = [json.loads(line) for line in log_file.read_text().splitlines()]
        (check,) = [e for e in events if e["event"] == "check_ok"]
        assert check["env"] == "staging"
        assert log_file.name.endswith(f"-{check['run_id']}.log")
        assert {e["run_id"] for e in events} == {check["run_id"]}


def test_cli_custom_env_from_file(cli: Cli, database_url: str, project: Path) -> None:
    """A .env.qa file adds env qa, with its own URL."""
    (project / ".env.qa").write_text(f"DATABASE_URL={database_url}\n")
    done = cli("check", "--env", "qa", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["env"] == "qa"
