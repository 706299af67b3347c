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

The policy also follows the database (``for_target``): one that a protected env has
changed remembers it (``Place.deployed_as``, read by ``predeploy.db.protection``) and gets the
protected policy whatever the env; a development env's relaxed policy holds only on the
embedded server or a loopback/socket database (else it asks and backs up, as any other env,
unless PREDEPLOY_PROTECTED=0 says the database is a scratch one).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from predeploy._util.loopback import is_loopback

if TYPE_CHECKING:
    from predeploy.config.settings import Settings

__all__ = [
    "DEVELOPMENT_ENVS",
    "EMBEDDED",
    "PROTECTED_ENVS",
    "Place",
    "Policy",
    "embedded_stands_in",
    "for_target",
    "is_local",
    "make_policy",
    "policy_for",
]

PROTECTED_ENVS = frozenset({"prod", "production"})
DEVELOPMENT_ENVS = frozenset({"dev", "development"})

Confirmation = Literal["none", "yes", "typed"]
BlockerRule = Literal["list", "ask"]
EMBEDDED = "the embedded server"  # Place.server of the embedded dev PostgreSQL


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
    why: str = ""  # why this policy applies, for the checklist and `check`
    target: str = ""  # "database on server" once the target is known
    deployed_as: str | None = None  # the env the database remembers, if any
    marked: bool = False  # its marker says so (not only the audit rows of an older run)
    inherited: bool = False  # protected only because the database remembers it
    caution: str | None = None  # said once when the database, not the env, decided

    @property
    def label(self) -> str:
        """How the env is described in messages: 'prod (protected)'."""
        if self.inherited:
            return f"{self.env} (protected: deployed as {self.deployed_as})"
        return f"{self.env} (protected)" if self.protected else self.env

    @property
    def marks(self) -> bool:
        """A run under this policy that changes the database makes it remember its env."""
        return (
            self.protected
            and not self.inherited
            and (not self.marked or self.deployed_as != self.env)
        )

    @property
    def summary(self) -> str:
        """Which policy and why: 'protected (deployed as prod)'."""
        gates = "protected" if self.protected else ("relaxed" if self.development else "asks")
        return f"{gates} ({self.why})" if self.why else gates

    def describe(self) -> str:
        """One line for the checklist: which database, which policy, why."""
        return f"{self.target}: {self.summary}" if self.target else self.summary


@dataclass(frozen=True)
class Place:
    """What a run learnt about its database before its policy is decided."""

    database: str
    server: str  # host:port, the socket, or "the embedded server"
    local: bool  # embedded, a socket, localhost or a loopback address
    deployed_as: str | None = None  # the env a protected run recorded there
    marked: bool = False  # by the marker (False: only in the audit rows of an older run)

    @property
    def where(self) -> str:
        return f"{self.database} on {self.server}"


def policy_for(settings: Settings) -> Policy:
    """The policy of ``settings.env`` (before its database is known: see ``for_target``)."""
    return make_policy(
        settings.env,
        protected=getattr(settings, "protected", None),
        allow_no_backup=settings.allow_no_backup,
    )


def embedded_stands_in(env: str) -> bool:
    """A development env needs no URL: the embedded dev server stands in for one."""
    return env in DEVELOPMENT_ENVS


def is_local(host: str | None, hostaddr: str | None = None) -> bool:
    """True for the embedded server (``None``), a Unix socket, localhost or a loopback
    address (127.0.0.0/8, ::1); ``hostaddr`` (libpq's) wins over the name when given."""
    if host is None and hostaddr is None:
        return True
    name = (hostaddr or host or "").strip().strip("[]").lower()
    if not name or name.startswith(("/", "@")):
        return True
    return is_loopback(name)


def for_target(
    policy: Policy, target: Place, *, scratch: bool, allow_no_backup: bool = False
) -> Policy:
    """The policy that applies to ``target``: the env's, raised where the database says so.

    ``scratch`` is PREDEPLOY_PROTECTED=0: it opens a non-local database to a development
    env, but never lifts what the database remembers (a forgotten setting must not
    un-protect production).
    """
    known = dataclasses.replace(
        policy, target=target.where, deployed_as=target.deployed_as, marked=target.marked
    )
    if policy.protected:
        return known
    if target.deployed_as is not None:
        return _remembered(policy.env, target, allow_no_backup)
    if target.local:
        why = "the embedded server" if target.server == EMBEDDED else "a local database"
        return dataclasses.replace(known, why=f"{policy.why}, {why}" if policy.why else why)
    if scratch:
        return dataclasses.replace(known, why=f"{policy.why}: a scratch database")
    return _not_local(known, target) if policy.development else known


def _remembered(env: str, target: Place, allow_no_backup: bool) -> Policy:
    """The protected policy, for a database a protected env changed."""
    return dataclasses.replace(
        make_policy(env, protected=True, allow_no_backup=allow_no_backup),
        why=f"deployed as {target.deployed_as}",
        target=target.where,
        deployed_as=target.deployed_as,
        marked=target.marked,
        inherited=True,
        caution=(
            f"{target.database} was deployed as {target.deployed_as}: the protected policy "
            f"applies (env {env})"
        ),
    )


def _not_local(known: Policy, target: Place) -> Policy:
    """A development env's policy on a database elsewhere: asked about and backed up."""
    return dataclasses.replace(
        known,
        development=False,
        backup_required=True,
        confirmation="yes",
        edited_blocks=True,
        why=f"env {known.env} on a database that is not local",
        caution=(
            f"{target.where} is not a local database: env {known.env} asks before changing it "
            f"and backs it up first (PREDEPLOY_PROTECTED=0 if it is a scratch database, or "
            f"--env prod)"
        ),
    )


def make_policy(env: str, *, protected: bool | None, allow_no_backup: bool) -> Policy:
    """The policy of ``env``; ``protected`` overrides the default (prod, production)."""
    guarded = env in PROTECTED_ENVS if protected is None else protected
    development = env in DEVELOPMENT_ENVS and not guarded
    if protected is None:
        why = f"env {env} is protected" if guarded else f"env {env} is not protected"
    else:
        why = f"PREDEPLOY_PROTECTED={int(protected)}"
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
        why=why,
    )
