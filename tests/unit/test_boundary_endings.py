"""The boundary's other half: how a command that something ended is logged and ended
(cli/boundary.py guarded, fail, failed). Each way in: a signal's exception, Ctrl-C, a real
refused connection, an already mapped Exit, the library's own error."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Callable

import psycopg
import pytest
import structlog
from invoke.exceptions import Exit

from predeploy.cli import output
from predeploy.cli.boundary import fail, failed, guarded
from predeploy.errors import LockBusy, Terminated


def _refused() -> None:
    """A real connection refused: a loopback port that was just free."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    psycopg.connect(f"host=127.0.0.1 port={port} dbname=x user=x connect_timeout=2").close()


def _raise(exc: BaseException) -> Callable[[], None]:
    def action() -> None:
        raise exc

    return action


# action -> (the line's start, exit code, the log event with its level; None: none logged)
ENDINGS = [
    pytest.param(
        _raise(Terminated(signal.SIGTERM)),
        "predeploy: stopped by SIGTERM",
        143,
        ("terminated", "warning"),
        id="sigterm",
    ),
    pytest.param(
        _raise(Terminated(signal.SIGHUP)),
        "predeploy: stopped by SIGHUP",
        129,
        ("terminated", "warning"),
        id="sighup",
    ),
    pytest.param(
        _raise(KeyboardInterrupt()),
        "predeploy: interrupted (SIGINT)",
        130,
        ("interrupted", "warning"),
        id="ctrl-c",
    ),
    pytest.param(
        _refused,
        "predeploy: the database connection failed mid-run: ",
        3,
        ("connection_lost", "error"),
        id="connection-refused",
    ),
    pytest.param(_raise(Exit("predeploy: mapped", 6)), "predeploy: mapped", 6, None, id="exit"),
    pytest.param(
        _raise(LockBusy("another run holds the lock")),
        "predeploy: another run holds the lock",
        6,
        ("run_failed", "error"),
        id="library-error",
    ),
]


@pytest.mark.parametrize(("action", "line", "code", "event"), ENDINGS)
def test_guarded_ends_each_way_with_its_line_code_and_log_event(
    action: Callable[[], None], line: str, code: int, event: tuple[str, str] | None
) -> None:
    with structlog.testing.capture_logs() as events, pytest.raises(Exit) as ended:
        guarded(action, None)
    assert str(ended.value.message).startswith(line), ended.value.message
    assert ended.value.code == code
    logged = [(e["event"], e["log_level"]) for e in events]
    assert logged == ([] if event is None else [event])


def test_guarded_returns_what_the_action_returns() -> None:
    with structlog.testing.capture_logs() as events:
        assert guarded(lambda: 42, None) == 42
    assert events == []


def test_fail_ends_with_the_mapped_line_and_logs_nothing() -> None:
    with structlog.testing.capture_logs() as events, pytest.raises(Exit) as ended:
        fail(Terminated(signal.SIGTERM))
    assert (ended.value.message, ended.value.code) == ("predeploy: stopped by SIGTERM", 143)
    assert ended.value.__suppress_context__  # `from None`: no chained traceback
    assert events == []


def test_failed_logs_the_error_for_the_run_log_then_ends() -> None:
    with structlog.testing.capture_logs() as events, pytest.raises(Exit) as ended:
        failed(LockBusy("another run holds the lock"))
    assert (ended.value.message, ended.value.code) == (
        "predeploy: another run holds the lock",
        6,
    )
    (event,) = events
    assert (event["event"], event["error"], event["exit_code"]) == ("run_failed", "LockBusy", 6)
    assert event["detail"] == "another run holds the lock"


def test_a_failure_after_the_json_result_adds_no_second_object(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: a command that failed before its result says {"error", "exit_code"}; one
    whose report is out already (status --check's) prints nothing more on stdout."""
    monkeypatch.setattr(output, "_emitted", False)  # one command per process: this test's
    with structlog.testing.capture_logs(), pytest.raises(Exit):
        guarded(_raise(LockBusy("busy")), None, json_output=True)
    assert json.loads(capsys.readouterr().out) == {"error": "busy", "exit_code": 6}
    output.emit({"ok": False}, "", json_output=True)
    with structlog.testing.capture_logs(), pytest.raises(Exit) as ended:
        guarded(_raise(LockBusy("busy")), None, json_output=True)
    assert ended.value.code == 6
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [{"ok": False}]
