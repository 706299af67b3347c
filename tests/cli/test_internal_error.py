"""Exit 9: a bug is one line on stderr naming the log file, and the traceback only there."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import Cli

# A manifest a person edited by hand: valid JSON, but "migrations" is not an object. The
# listing reads it as one (BackupInfo.as_dict): an AttributeError predeploy did not foresee.
_MANIFEST = {"created_at": "2026-01-01T00:00:00+00:00", "file": "x.dump", "migrations": "x"}


def _damaged_project(project: Path) -> None:
    (project / ".env.staging").write_text("DATABASE_URL=postgresql://u@127.0.0.1:9/db\n")
    folder = project / "backups" / "staging"
    folder.mkdir(parents=True)
    (folder / "x.dump.json").write_text(json.dumps(_MANIFEST))


def test_an_internal_error_is_one_line_and_the_traceback_is_in_the_log_file(
    cli: Cli, project: Path
) -> None:
    """`predeploy backups` over a hand-edited manifest: exit 9, one line that names the
    error and the log file, no traceback on screen; the log file has it."""
    _damaged_project(project)
    done = cli("backups", "--env", "staging")
    assert done.returncode == 9, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("predeploy: internal error (AttributeError: ")
    log_file = Path(lines[0].split("the traceback is in ", 1)[1])
    assert log_file.parent == project / "logs"
    logged = log_file.read_text()
    assert "Traceback" in logged and "AttributeError" in logged


def test_an_internal_error_with_json_is_one_object_with_its_code(cli: Cli, project: Path) -> None:
    """With --json, stdout is one object: the error line and exit code 9."""
    _damaged_project(project)
    done = cli("backups", "--env", "staging", "--json")
    assert done.returncode == 9, done.stderr
    result = json.loads(done.stdout)
    assert result["exit_code"] == 9
    assert result["error"].startswith("internal error (AttributeError: ")
