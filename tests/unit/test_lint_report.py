"""migrate.lint: the typed per-file part of a lint report and its JSON shape."""

from __future__ import annotations

import dataclasses

import pytest

from predeploy.migrate.lint import LintedFile, LintReport


@pytest.mark.parametrize(
    ("linted", "shape"),
    [
        (
            LintedFile("1_a", "m/1_a/migration.sql", True),
            {"migration": "1_a", "file": "m/1_a/migration.sql", "transactional": True,
             "waivers": []},
        ),
        (  # once the phase rules have seen it: its phase, even when it has none
            LintedFile("2_b", "f", False, ("ban-drop-column",), phase=None),
            {"migration": "2_b", "file": "f", "transactional": False,
             "waivers": ["ban-drop-column"], "phase": None},
        ),
    ],
)  # fmt: skip
def test_linted_file_shape(linted: LintedFile, shape: dict[str, object]) -> None:
    assert linted.as_dict() == shape


def test_report_lists_every_file_with_its_findings() -> None:
    files = [LintedFile("1_a", "a", True), LintedFile("2_b", "b", False)]
    report = LintReport(files=[dataclasses.replace(f, phase="pre-deploy") for f in files])
    data = report.as_dict()
    assert data["counts"] == {"info": 0, "warning": 0, "error": 0, "waived": 0}
    assert [(f["migration"], f["phase"], f["findings"]) for f in data["files"]] == [
        ("1_a", "pre-deploy", []),
        ("2_b", "pre-deploy", []),
    ]
