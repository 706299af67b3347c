"""The policy of an env: which gates a run that changes the database must pass.

One frozen ``Policy`` per env, built from the settings; every gate reads it, and no other
code compares env names. ``prod`` and ``production`` are protected by default;
``PREDEPLOY_PROTECTED=1`` protects any env, ``=0`` unprotects one explicitly. The
development envs (``dev``, ``development``) change their own throwaway database: no
backup, no question.

| | development | any other env | protected |
|---|---|---|---|
| verified backup before applying | no | yes | yes (``--no-backup``: PREDEPLOY_ALLOW_NO_BACKUP=1) |
| confirmation | none | y/N | the database name, typed |
| lint errors | shown | shown | refuse (``--force-lint``) |
| an applied migration edited | warned | refuse | refuse |
| blocking sessions | listed | listed | asked (``--yes``: waited for, then refuse) |
| ``--rehearse`` | as apply | as apply | behind the confirmation |
| drift before applying | not checked | not checked | checked |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from predeploy.config.settings import Settings

__all__ = ["DEVELOPMENT_ENVS", "PROTECTED_ENVS", "Policy", "policy_for"]

PROTECTED_ENVS = frozenset({"prod", "production"})
DEVELOPMENT_ENVS = frozenset({"dev", "development"})

Confirmation = Literal["none", "yes", "typed"]
BlockerRule = Literal["list", "ask"]


@dataclass(frozen=True)
class Policy:
    """The gates of one env."""

    env: str
    protected: bool
    development: bool
    backup_required: bool
    no_backup_allowed: bool
    confirmation: Confirmation
    lint_errors_block: bool
    edited_blocks: bool
    blockers: BlockerRule
    rehearse_confirmed: bool
    drift_checked: bool

    @property
    def label(self) -> str:
        """How the env is described in messages: 'prod (protected)'."""
        return f"{self.env} (protected)" if self.protected else self.env


def policy_for(settings: Settings) -> Policy:
    """The policy of ``settings.env``."""
    return make_policy(
        settings.env,
        protected=getattr(settings, "protected", None),
        allow_no_backup=settings.allow_no_backup,
    )


def make_policy(env: str, *, protected: bool | None, allow_no_backup: bool) -> Policy:
    """The policy of ``env``; ``protected`` overrides the default (prod, production)."""
    guarded = env in PROTECTED_ENVS if protected is None else protected
    development = env in DEVELOPMENT_ENVS and not guarded
    return Policy(
        env=env,
        protected=guarded,
        development=development,
        backup_required=not development,
        no_backup_allowed=not guarded or allow_no_backup,
        confirmation="typed" if guarded else ("none" if development else "yes"),
        lint_errors_block=guarded,
        edited_blocks=not development,
        blockers="ask" if guarded else "list",
        rehearse_confirmed=guarded,
        drift_checked=guarded,
    )
