"""One policy per env decides every gate: the policy of each env, as a table."""

from __future__ import annotations

from pathlib import Path

import pytest

from predeploy.config.policy import policy_for
from predeploy.config.settings import load_settings
from predeploy.errors import ConfigError

# (protected, confirmation, backup required, --no-backup allowed, lint errors block,
#  edited migrations block, blockers, rehearse behind the confirmation)
DEVELOPMENT = (False, "none", False, True, False, False, "list", False)


ORDINARY = (False, "yes", True, True, False, True, "list", False)


PROTECTED = (True, "typed", True, False, True, True, "ask", True)


@pytest.mark.parametrize(
    ("env", "setting", "expected"),
    [
        ("dev", None, DEVELOPMENT),
        ("development", None, DEVELOPMENT),
        ("staging", None, ORDINARY),
        ("qa", None, ORDINARY),
        ("prod", None, PROTECTED),
        ("production", None, PROTECTED),
        ("staging", "1", PROTECTED),
        ("qa", "yes", PROTECTED),
        ("dev", "1", PROTECTED),
        ("prod", "0", ORDINARY),
        ("production", "false", ORDINARY),
        ("development", "0", DEVELOPMENT),
    ],
)
def test_policy_of_each_env(
    tmp_path: Path, env: str, setting: str | None, expected: tuple[object, ...]
) -> None:
    """Each env's gates, from its name and PREDEPLOY_PROTECTED."""
    for name in ("qa", "production", "development"):
        (tmp_path / f".env.{name}").write_text("")
    environ = {"DATABASE_URL": "postgresql://app@localhost/app"}
    if setting is not None:
        environ["PREDEPLOY_PROTECTED"] = setting
    policy = policy_for(load_settings(env, tmp_path, environ))
    assert (
        policy.protected,
        policy.confirmation,
        policy.backup_required,
        policy.no_backup_allowed,
        policy.lint_errors_block,
        policy.edited_blocks,
        policy.blockers,
        policy.rehearse_confirmed,
    ) == expected
    assert policy.drift_checked is policy.protected
    assert policy.label == (f"{env} (protected)" if policy.protected else env)


def test_allow_no_backup_opens_only_that_gate(tmp_path: Path) -> None:
    """PREDEPLOY_ALLOW_NO_BACKUP=1 in prod allows --no-backup and changes nothing else."""
    environ = {"DATABASE_URL": "postgresql://app@localhost/app", "PREDEPLOY_ALLOW_NO_BACKUP": "1"}
    policy = policy_for(load_settings("prod", tmp_path, environ))
    assert policy.no_backup_allowed and policy.protected and policy.confirmation == "typed"


def test_a_bad_protected_value_is_a_configuration_error(tmp_path: Path) -> None:
    """PREDEPLOY_PROTECTED=maybe: exit 2 naming the variable."""
    environ = {"DATABASE_URL": "postgresql://app@localhost/app", "PREDEPLOY_PROTECTED": "maybe"}
    with pytest.raises(ConfigError, match="PREDEPLOY_PROTECTED='maybe'") as refused:
        load_settings("staging", tmp_path, environ)
    assert refused.value.exit_code == 2
