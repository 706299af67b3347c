"""Migrations on disk, in Prisma's layout: discovery is pure, it never touches a database.

    migrations/
      migration_lock.toml          provider = "postgresql" (optional)
      20261123101500_add_avatar/
        migration.sql              the forward change (required)
        down.sql                   how to undo it (optional)

Order is the byte-wise order of folder names; a migration's identity is its
whole folder name. The checksum is the SHA-256 hex of migration.sql's bytes, as
Prisma computes it.

A script is analysed (pglast) once per process, by its checksum: a fleet run discovers the
same folder for each of its targets, and parsing the same files again for every one of them
was a third of its CPU time a target.
"""

from __future__ import annotations

import hashlib
import re
import threading
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from predeploy._util.files import read_bytes, read_text
from predeploy.errors import ConfigError

if TYPE_CHECKING:
    from predeploy.migrate.sqlscript import Script

_ANALYSED: dict[str, Script] = {}  # by checksum: Script is frozen, one per distinct file
_ANALYSED_AT_MOST = 2048  # the oldest go first (a long-lived process sees many histories)
_ANALYSED_LOCK = threading.Lock()

__all__ = [
    "POST_DEPLOY",
    "POST_MARKER",
    "PRE_DEPLOY",
    "Migration",
    "checksum",
    "checksum_variants",
    "create",
    "decode",
    "discover",
]

PRE_DEPLOY, POST_DEPLOY = "pre-deploy", "post-deploy"
POST_MARKER = "-- predeploy: post-deploy"
_MARKER = re.compile(r"^\s*--\s*predeploy:\s*post-deploy\s*$", re.IGNORECASE)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


@dataclass(frozen=True)
class Migration:
    """One migration folder."""

    name: str
    folder: Path

    @property
    def sql_path(self) -> Path:
        return self.folder / "migration.sql"

    @property
    def down_path(self) -> Path | None:
        path = self.folder / "down.sql"
        return path if path.is_file() else None

    @cached_property
    def script(self) -> bytes:
        return read_bytes(self.sql_path)

    @cached_property
    def checksum(self) -> str:
        return checksum(self.script)

    @cached_property
    def text(self) -> str:
        """migration.sql as text (a UTF-8 byte-order mark dropped); ConfigError if not UTF-8."""
        return decode(self.script, self.sql_path)

    @cached_property
    def parsed(self) -> Script:
        """The script split and classified (pglast), once per distinct file in a process."""
        found = _ANALYSED.get(self.checksum)
        if found is not None:
            return found
        from predeploy.migrate.sqlscript import analyse  # noqa: PLC0415 (pglast if needed)

        found = analyse(self.text)
        with _ANALYSED_LOCK:
            while len(_ANALYSED) >= _ANALYSED_AT_MOST:
                del _ANALYSED[next(iter(_ANALYSED))]
            return _ANALYSED.setdefault(self.checksum, found)

    @cached_property
    def down_script(self) -> Script | None:
        """down.sql split and classified; None when there is none."""
        from predeploy.migrate.sqlscript import analyse  # noqa: PLC0415 (pglast only when needed)

        path = self.down_path
        if path is None:
            return None
        return analyse(decode(read_bytes(path), path))

    @cached_property
    def phase(self) -> str:
        """post-deploy when the first line of migration.sql is `-- predeploy: post-deploy`
        (Prisma ignores the comment); pre-deploy otherwise."""
        first = self.text.split("\n", 1)[0]
        return POST_DEPLOY if _MARKER.match(first.rstrip("\r")) else PRE_DEPLOY

    def matches(self, recorded: str) -> bool:
        """True when ``recorded`` is this file's checksum, allowing CRLF/LF churn."""
        return recorded in checksum_variants(self.script)


def decode(data: bytes, path: Path) -> str:
    """A SQL file's text; ConfigError naming the file and the byte when it is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 (byte {exc.start} is 0x{data[exc.start]:02x}): save it as "
            f"UTF-8 (e.g. iconv -f latin1 -t utf-8), as PostgreSQL and Prisma expect"
        ) from None


def checksum(data: bytes) -> str:
    """Prisma's checksum: SHA-256 hex of the file's bytes."""
    return hashlib.sha256(data).hexdigest()


def checksum_variants(data: bytes) -> frozenset[str]:
    """The checksums of ``data`` as written, with LF line ends, and with CRLF ones."""
    lf = data.replace(b"\r\n", b"\n")
    crlf = lf.replace(b"\n", b"\r\n")
    return frozenset({checksum(data), checksum(lf), checksum(crlf)})


def discover(directory: Path) -> list[Migration]:
    """Every migration under ``directory`` in byte-wise order of folder names.

    A folder without migration.sql, or a lock file for another provider, is a
    ConfigError naming it: nothing may run from a half-understood folder.
    """
    if not directory.is_dir():
        raise ConfigError(
            f"migrations folder {directory} does not exist: create it "
            f"(predeploy new NAME) or set PREDEPLOY_MIGRATIONS_DIR"
        )
    _check_lock_file(directory / "migration_lock.toml")
    _check_no_dangling(directory)
    folders = sorted(
        (p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name.encode("utf-8", "surrogateescape"),
    )
    _check_utf8(directory, folders)
    missing = [p.name for p in folders if not (p / "migration.sql").is_file()]
    if missing:
        raise ConfigError(
            f"migration folder(s) without migration.sql in {directory}: {', '.join(missing)} "
            f"(add the file or remove the folder)"
        )
    return [Migration(name=p.name, folder=p) for p in folders]


def _check_no_dangling(directory: Path) -> None:
    """No symlink in ``directory`` (or a folder's migration.sql) whose target is gone."""
    dangling = sorted(
        p.name for p in directory.iterdir() if p.is_symlink() and not p.exists()
    ) + sorted(
        f"{p.name}/migration.sql"
        for p in directory.iterdir()
        if p.is_dir() and (p / "migration.sql").is_symlink() and not (p / "migration.sql").exists()
    )
    if dangling:
        raise ConfigError(
            f"dangling symlink(s) in {directory}: {', '.join(dangling)} (their target is gone): "
            f"fix or remove them; nothing was done"
        )


def _check_utf8(directory: Path, folders: list[Path]) -> None:
    """Every folder name is UTF-8 (a migration's name is kept as text)."""
    undecodable = [p.name for p in folders if not _is_utf8(p.name)]
    if undecodable:
        shown = ", ".join(
            n.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for n in undecodable
        )
        raise ConfigError(
            f"migration folder name(s) in {directory} are not UTF-8: {shown} (rename them: "
            f"a migration's name is kept as text in the history table)"
        )


def create(
    directory: Path, name: str, now: datetime | None = None, *, post_deploy: bool = False
) -> Migration:
    """Create `<UTC %Y%m%d%H%M%S>_<name>/` with migration.sql and a down.sql template;
    ``post_deploy`` starts migration.sql with the post-deploy marker."""
    if not _NAME.match(name):
        raise ConfigError(
            f"migration name {name!r} must be lowercase letters, digits and underscores, "
            f"starting with a letter or digit (for example add_user_avatar)"
        )
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    folder = directory / f"{stamp}_{name}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        folder.mkdir()
    except FileExistsError:
        raise ConfigError(f"{folder} already exists: wait a second or pick another name") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {folder}: {exc.strerror}") from None
    marker = f"{POST_MARKER}\n" if post_deploy else ""
    (folder / "migration.sql").write_text(f"{marker}-- {name}: the forward change.\n")
    (folder / "down.sql").write_text(
        f"-- {name}: undo migration.sql (run by `predeploy rollback`). Delete this file\n"
        f"-- if the change cannot be undone, so that rollback refuses instead.\n"
    )
    return Migration(name=folder.name, folder=folder)


def _is_utf8(name: str) -> bool:
    """False for a file name with bytes that are not UTF-8 (held as surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_lock_file(path: Path) -> None:
    if not path.is_file():
        return
    try:
        provider = tomllib.loads(read_text(path)).get("provider")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    if provider not in (None, "postgresql", "postgres"):
        raise ConfigError(
            f"{path} says provider = {provider!r}: predeploy applies PostgreSQL migrations only"
        )
