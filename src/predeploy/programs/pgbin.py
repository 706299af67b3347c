"""Which pg_dump and pg_restore to use for a server; where a major version's server is.

Candidates, in order of preference: PREDEPLOY_PG_BIN_DIR, the system's PostgreSQL
installations, then the embedded wheel's. The first whose major version equals
the server's wins; else the newest one, with a warning: a newer pg_dump reads an
older server, an older one refuses it.

Versions are asked of each program once (``pg_dump --version``, ~10-20 ms a call) and kept
in the cache folder by path, size and modification time (see ``predeploy._util.cache``): an
upgraded or replaced program is asked again.

``server_bin_dir`` finds a major version's server programs (initdb, pg_ctl, postgres), for
drift's throwaway shadow cluster: in PREDEPLOY_PG_BIN_DIR only when it is set, else in the
usual layouts (Debian/Ubuntu, RHEL/PGDG, Homebrew, a source build, ``postgres`` on PATH).
"""

from __future__ import annotations

import glob
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from predeploy._util import cache

__all__ = [
    "PgProgram",
    "ToolChoice",
    "choose",
    "find_candidates",
    "program_version",
    "select",
    "server_bin_dir",
]

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
_SYSTEM_GLOBS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/usr/local/pgsql/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
)
_SERVER_LAYOUTS = (  # where a major version's server programs live, by packaging
    "/usr/lib/postgresql/{major}/bin",  # Debian, Ubuntu
    "/usr/pgsql-{major}/bin",  # RHEL and PGDG packages
    "/opt/homebrew/opt/postgresql@{major}/bin",  # Homebrew on Apple silicon
    "/usr/local/opt/postgresql@{major}/bin",  # Homebrew on Intel
    "/usr/local/pgsql/bin",  # a source build (its version is asked)
)
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")


@dataclass(frozen=True)
class PgProgram:
    """A PostgreSQL client program and its version."""

    path: Path
    major: int
    version: str
    source: str  # "PREDEPLOY_PG_BIN_DIR", "system" or "embedded"


@dataclass(frozen=True)
class ToolChoice:
    """The pg_dump/pg_restore pair chosen for a server, with a warning when it is wrong."""

    pg_dump: PgProgram | None
    pg_restore: PgProgram | None
    server_major: int
    warning: str | None

    @property
    def usable(self) -> bool:
        return self.pg_dump is not None and self.pg_dump.major >= self.server_major


def program_version(path: Path, cache_dir: Path | None = None) -> tuple[int, str] | None:
    """(major, full version) of a PostgreSQL program, or None if it does not run.

    Kept in ``cache_dir`` (the project's cache folder; by default the user's).
    """
    answer = cache.probe(path, cache_dir or cache.user_folder(), _ask_version)
    if not isinstance(answer, list) or len(answer) != 2:
        return None
    return int(answer[0]), str(answer[1])


def _ask_version(path: Path) -> list[int | str] | None:
    from predeploy.programs import run as programs  # noqa: PLC0415 (sh only when a program runs)

    try:
        out = programs.output(path, ["--version"], timeout=10)
    except programs.ProgramFailed:
        return None
    match = _VERSION.search(out)
    if match is None:
        return None
    return [int(match.group(1)), match.group(0).split()[-1]]


def find_candidates(
    name: str, pg_bin_dir: Path | None, embedded_bin: Path | None, cache_dir: Path | None = None
) -> list[PgProgram]:
    """Every runnable ``name`` (pg_dump, pg_restore, ...) in preference order."""
    dirs: list[tuple[Path, str]] = []
    if pg_bin_dir is not None:
        dirs.append((pg_bin_dir, "PREDEPLOY_PG_BIN_DIR"))
    system = sorted(
        {Path(p) for pattern in _SYSTEM_GLOBS for p in glob.glob(pattern)}, reverse=True
    )
    dirs.extend((d, "system") for d in system)
    on_path = shutil.which(name)
    if on_path is not None and Path(on_path).resolve().name == name:  # skip Debian's pg_wrapper
        dirs.append((Path(on_path).resolve().parent, "system"))
    if embedded_bin is not None:
        dirs.append((embedded_bin, "embedded"))
    found: list[PgProgram] = []
    seen: set[Path] = set()
    for directory, source in dirs:
        path = directory / name
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        version = program_version(path, cache_dir)
        if version is not None:
            found.append(PgProgram(path=path, major=version[0], version=version[1], source=source))
    return found


def choose(server_major: int, dumps: list[PgProgram], restores: list[PgProgram]) -> ToolChoice:
    """Pick the pg_dump/pg_restore pair for a server of ``server_major``."""
    dump = _best(server_major, dumps)
    restore = _best(server_major, restores)
    warning = None
    if dump is None:
        warning = (
            "no pg_dump found: install the PostgreSQL client programs "
            f"(version {server_major}) or set PREDEPLOY_PG_BIN_DIR"
        )
    elif dump.major < server_major:
        warning = (
            f"only pg_dump {dump.major} found, older than the server ({server_major}), "
            f"which it refuses: install the version {server_major} client or set "
            "PREDEPLOY_PG_BIN_DIR"
        )
    elif dump.major > server_major:
        warning = (
            f"no pg_dump {server_major} found; using the newer pg_dump {dump.major} "
            f"(its dumps may not restore into an older server)"
        )
    return ToolChoice(pg_dump=dump, pg_restore=restore, server_major=server_major, warning=warning)


def _best(server_major: int, candidates: list[PgProgram]) -> PgProgram | None:
    same = [p for p in candidates if p.major == server_major]
    if same:
        return same[0]
    return max(candidates, key=lambda p: p.major, default=None)


def select(pg_bin_dir: Path | None, server_major: int, cache_dir: Path | None = None) -> ToolChoice:
    """Find every candidate (PREDEPLOY_PG_BIN_DIR, system, embedded) and choose for the server.

    ``cache_dir``: where program versions are kept (the project's cache folder,
    ``predeploy._util.cache.folder(settings.root)``); by default the user's.
    """
    from predeploy.db import embedded  # noqa: PLC0415 (the wheel is imported only when needed)

    embedded_bin = embedded.bin_dir()
    dumps = find_candidates("pg_dump", pg_bin_dir, embedded_bin, cache_dir)
    restores = find_candidates("pg_restore", pg_bin_dir, embedded_bin, cache_dir)
    return choose(server_major, dumps, restores)


def server_bin_dir(
    major: int, pg_bin_dir: Path | None, cache_dir: Path | None = None
) -> tuple[Path | None, list[Path]]:
    """The folder of PostgreSQL ``major``'s server programs, or None; and where it looked.

    PREDEPLOY_PG_BIN_DIR, when set, is the only place looked at: the operator chose it.
    """
    if pg_bin_dir is not None:
        looked = [pg_bin_dir]
    else:
        looked = [Path(layout.format(major=major)) for layout in _SERVER_LAYOUTS]
        on_path = shutil.which("postgres")
        if on_path is not None:
            looked.append(Path(on_path).resolve().parent)
    for folder in dict.fromkeys(looked):
        if not all((folder / name).is_file() for name in SERVER_PROGRAMS):
            continue
        version = program_version(folder / "postgres", cache_dir)
        if version is not None and version[0] == major:
            return folder, looked
    return None, looked
