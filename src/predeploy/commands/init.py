"""`predeploy init`: adopt predeploy into an existing app repository, changing nothing there.

It adds what is missing and nothing else: predeploy's settings (commented out) at the end
of ``.env.example``; ``.gitignore`` entries for what predeploy writes into the project
(``.pgdata/``, ``backups/``, ``logs/``, ``.predeploy/``) and for every file that holds a
secret (``.env``, ``.env.*`` but ``.env.example``, ``.venv/``); and
``scripts/run-migrations.sh``, so that the ``./scripts/run-migrations.sh prod`` a team
already types runs predeploy. It never rewrites a line or a file that exists, so running
it twice changes nothing the second time. The pm2 post-deploy line, the crontab line and
the systemd service and timer, for this folder and the virtualenv predeploy runs from,
are printed for the operator to install: an ecosystem file, a crontab and units are theirs.
When the project's ``.env`` points at a database that is not on this machine (a server's
production URL), it suggests the ``PREDEPLOY_ENV=prod`` line, so that a bare command gets
prod's policy; it never edits ``.env``.
"""

from __future__ import annotations

import os
import pwd
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from predeploy._util.files import read_text
from predeploy.config.policy import is_local
from predeploy.errors import ConfigError
from predeploy.integrations.pm2 import home_prefix

if TYPE_CHECKING:
    from predeploy.config.settings import Settings

__all__ = ["Adopted", "init"]

MARKER = "# --- predeploy ---"
# what predeploy writes into the project, then every file that holds a secret; a
# negation must come after the pattern it excepts from
IGNORED = (
    ".pgdata/",
    "backups/",
    "logs/",
    ".predeploy/",
    ".venv/",
    ".env",
    ".env.*",
    "!.env.example",
)
SCRIPT = "run-migrations.sh"
_EXAMPLE_ROOT = "/srv/web/current"
_EXAMPLE_PROGRAM = f"{_EXAMPLE_ROOT}/.venv/bin/predeploy"
UNITS = ("predeploy-maintenance.service", "predeploy-maintenance.timer")


@dataclass
class Adopted:
    """What ``init`` found and did."""

    root: Path
    changed: list[str] = field(default_factory=list)  # "added 3 lines to .gitignore", ...
    unchanged: list[str] = field(default_factory=list)
    post_deploy: str = ""
    crontab: str = ""
    systemd: dict[str, str] = field(default_factory=dict)  # unit file name -> its text
    examples: str = ""  # the folder of the shipped examples (ecosystem file, hooks, units)
    migrations: str = ""
    suggestions: list[str] = field(default_factory=list)  # lines for the operator to act on

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "changed": self.changed,
            "unchanged": self.unchanged,
            "post_deploy": self.post_deploy,
            "crontab": self.crontab,
            "systemd": self.systemd,
            "examples": self.examples,
            "migrations": self.migrations,
            "suggestions": self.suggestions,
        }


def init(settings: Settings) -> Adopted:
    """The `predeploy init` command: ``_adopt``, with the ``.env`` suggestions (none when
    PREDEPLOY_ENV already names an env)."""
    from predeploy.config.project import env_name  # noqa: PLC0415 (settings: typing only above)

    done = _adopt(settings.root, settings.migrations_dir)
    done.suggestions = _suggest_env(settings, default_env=env_name(None) == "dev")
    return done


def _examples_folder() -> Path:
    """Where the installed package keeps its examples (the repository's scripts/)."""
    return Path(__file__).resolve().parents[1] / "examples"


def _adopt(root: Path, migrations_dir: Path, program: Path | None = None) -> Adopted:
    """Add predeploy's lines to ``root``'s .env.example and .gitignore, and
    scripts/run-migrations.sh when missing; describe the hooks."""
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder: run predeploy init inside the app repository")
    program = program or Path(sys.argv[0]).resolve()
    if program.name != "predeploy":
        program = Path(sys.prefix) / "bin" / "predeploy"
    done = Adopted(root, examples=str(_examples_folder()))
    _env_example(root / ".env.example", done)
    _gitignore(root / ".gitignore", done)
    _script(root / "scripts" / SCRIPT, done)
    here, run = shlex.quote(str(root)), shlex.quote(str(program))
    run = home_prefix() + run  # cron's env -i and a hook's shell would ask another pm2 daemon
    done.post_deploy = f"cd {here} && {run} deploy --env prod --yes"
    log = shlex.quote(str(root / "logs" / "maintenance-cron.log"))
    done.crontab = (
        f"17 3 * * * cd {here} && {run} maintenance --env prod --json >> {log} 2>&1"
        f' || echo "predeploy maintenance exited $? on $(hostname): see {log}"'
    )
    done.systemd = {unit: _unit(unit, root, program, os.environ.get("PM2_HOME")) for unit in UNITS}
    found = migrations_dir.is_dir()
    where = (
        migrations_dir.relative_to(root) if migrations_dir.is_relative_to(root) else migrations_dir
    )
    done.migrations = f"{where} ({'found' if found else 'missing: predeploy new NAME creates it'})"
    return done


def _suggest_env(settings: Settings, default_env: bool) -> list[str]:
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
                f"{variable} points at {url.address} (not a loopback address or socket) and "
                f"no PREDEPLOY_ENV is set: a bare predeploy command runs env dev there.",
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
    block = (_examples_folder() / "env.example").read_text()
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
        + "# predeploy: embedded dev database, backups, run logs, caches; files with secrets\n"
        + "".join(f"{entry}\n" for entry in missing),
    )
    done.changed.append(f"added {', '.join(missing)} to {path.name}")


def _script(path: Path, done: Adopted) -> None:
    """scripts/run-migrations.sh, executable, unless a file of that name exists."""
    name = f"{path.parent.name}/{path.name}"
    if path.exists() or path.is_symlink():
        done.unchanged.append(f"{name} exists: left as it is")
        return
    text = (_examples_folder() / SCRIPT).read_bytes()
    try:
        path.parent.mkdir(exist_ok=True)
        with path.open("xb") as out:
            out.write(text)
        path.chmod(0o755)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    done.changed.append(f"wrote {name} (./{name} ENV runs predeploy migrate --env ENV)")


def _unit(name: str, root: Path, program: Path, pm2_home: str | None) -> str:
    """A shipped systemd unit for this folder, virtualenv and the folder's owner, with the
    PM2_HOME init ran with (the service's environment has none of the shell's)."""
    text = (_examples_folder() / name).read_text()
    lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue  # the example's notes; the shipped file keeps them
        mine = line
        if line.startswith("ExecStart="):
            mine = line.replace(_EXAMPLE_PROGRAM, _systemd_quote(program), 1)
        elif line.startswith("User="):
            mine = f"User={_owner(root)}"
        lines.append(mine.replace(_EXAMPLE_ROOT, str(root).replace("%", "%%")))
        if line.startswith("WorkingDirectory=") and pm2_home:
            lines.append(f"Environment={_systemd_quote(f'PM2_HOME={pm2_home}')}")
    return "\n".join(lines).strip("\n") + "\n"


def _systemd_quote(path: Path | str) -> str:
    text = str(path).replace("%", "%%")
    if any(c.isspace() or c in "\"'\\" for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _owner(root: Path) -> str:
    """Who owns the project folder: the user that runs the app, as a rule."""
    uid = root.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _read(path: Path) -> str:
    return read_text(path, encoding="utf-8") if path.exists() else ""


def _append(path: Path, text: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
