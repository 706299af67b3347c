"""`predeploy init`: adopt predeploy into an existing app repository, changing nothing there.

It adds what is missing and nothing else: predeploy's settings (commented out) at the end
of ``.env.example``, and ``.gitignore`` entries for what predeploy writes into the project
(``.pgdata/``, ``backups/``, ``logs/``). It never rewrites a line that exists, so running it
twice changes nothing the second time. The pm2 post-deploy line and the crontab line, for
this folder and the virtualenv predeploy runs from, are printed for the operator to paste:
an ecosystem file and a crontab are theirs. When the project's ``.env`` points at a
database that is not on this machine (a server's production URL), it suggests the
``PREDEPLOY_ENV=prod`` line, so that a bare command gets prod's policy; it never edits
``.env``.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predeploy.config.policy import is_local
from predeploy.errors import ConfigError

if TYPE_CHECKING:
    from predeploy.config.settings import Settings

__all__ = ["Adopted", "adopt", "suggest_env"]

MARKER = "# --- predeploy ---"
IGNORED = (".pgdata/", "backups/", "logs/", ".predeploy/cache/")


@dataclass
class Adopted:
    """What ``init`` found and did."""

    root: Path
    changed: list[str] = field(default_factory=list)  # "added 3 lines to .gitignore", ...
    unchanged: list[str] = field(default_factory=list)
    post_deploy: str = ""
    crontab: str = ""
    migrations: str = ""
    suggestions: list[str] = field(default_factory=list)  # lines for the operator to act on

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "changed": self.changed,
            "unchanged": self.unchanged,
            "post_deploy": self.post_deploy,
            "crontab": self.crontab,
            "migrations": self.migrations,
            "suggestions": self.suggestions,
        }


def adopt(root: Path, migrations_dir: Path, program: Path | None = None) -> Adopted:
    """Add predeploy's lines to ``root``'s .env.example and .gitignore; describe the hooks."""
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder: run predeploy init inside the app repository")
    program = program or Path(sys.argv[0]).resolve()
    if program.name != "predeploy":
        program = Path(sys.prefix) / "bin" / "predeploy"
    done = Adopted(root)
    _env_example(root / ".env.example", done)
    _gitignore(root / ".gitignore", done)
    here, run = shlex.quote(str(root)), shlex.quote(str(program))
    done.post_deploy = f"cd {here} && {run} deploy --env prod --yes"
    log = shlex.quote(str(root / "logs" / "maintenance-cron.log"))
    done.crontab = (
        f"17 3 * * * cd {here} && {run} maintenance --env prod --json >> {log} 2>&1"
        f' || echo "predeploy maintenance exited $? on $(hostname): see {log}"'
    )
    found = migrations_dir.is_dir()
    where = (
        migrations_dir.relative_to(root) if migrations_dir.is_relative_to(root) else migrations_dir
    )
    done.migrations = f"{where} ({'found' if found else 'missing: predeploy new NAME creates it'})"
    return done


def suggest_env(settings: Settings, default_env: bool) -> list[str]:
    """When a bare command (``default_env``: no PREDEPLOY_ENV) would run dev against a
    database that is not on this machine, the lines that suggest ``PREDEPLOY_ENV=prod``."""
    if not default_env:
        return []
    urls = (
        (settings.database_url_var, settings.database_url),
        (settings.direct_database_url_var, settings.direct_database_url),
    )
    for variable, url in urls:
        if url is not None and not is_local(url.host, url.params.get("hostaddr")):
            return [
                f"{variable} points at {url.address} (not this machine) and no PREDEPLOY_ENV is "
                f"set: a bare predeploy command runs env dev there.",
                "If this is the production server, add this line to the environment of the "
                "user that runs predeploy (its shell profile, the pm2 ecosystem's env, the "
                "crontab; .env was not changed):",
                "  PREDEPLOY_ENV=prod",
            ]
    return []


def _env_example(path: Path, done: Adopted) -> None:
    text = _read(path)
    if MARKER in text:
        done.unchanged.append(f"{path.name} already has predeploy's settings")
        return
    block = resources.files("predeploy.examples").joinpath("env.example").read_text()
    lines = [
        MARKER,
        *(
            f"# {line}" if line and not line.startswith("#") else line
            for line in block.splitlines()
        ),
    ]
    separator = (
        "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    )
    _append(path, separator + "\n".join(lines) + "\n")
    done.changed.append(f"added predeploy's settings (commented out) to {path.name}")


def _gitignore(path: Path, done: Adopted) -> None:
    text = _read(path)
    present = {line.strip().strip("/") for line in text.splitlines()}
    missing = [entry for entry in IGNORED if entry.strip("/") not in present]
    if not missing:
        done.unchanged.append(f"{path.name} already ignores {', '.join(IGNORED)}")
        return
    separator = "" if not text or text.endswith("\n") else "\n"
    _append(
        path,
        separator
        + "# predeploy: embedded dev database, backups, run logs, caches\n"
        + "".join(f"{entry}\n" for entry in missing),
    )
    done.changed.append(f"added {', '.join(missing)} to {path.name}")


def _read(path: Path) -> str:
    try:
        return path.read_text() if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def _append(path: Path, text: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
