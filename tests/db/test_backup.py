"""Verified backups, retention and restore against a real PostgreSQL, with real failures."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from predeploy.backup import archive, retention
from predeploy.backup import dump as backup
from predeploy.commands import restore
from predeploy.commands.status import current as current_status
from predeploy.config.settings import Settings
from predeploy.db import target as db_target
from predeploy.errors import BackupError
from predeploy.programs import pgbin
from support import migrating
from support.filling import grow
from support.project import MakeSettings, schema_dump, write_migrations
from support.servers import Server


def _backup(settings: Settings, **kwargs: Any) -> backup.BackupResult:
    """A verified backup of ``settings``' database (its Target, its backup settings)."""
    return backup.backup(db_target.of(settings), settings.backup, **kwargs)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def fingerprint(url: str) -> dict[str, object]:
    """The schema dump and every table's contents, without our audit trail (which a
    restore writes to after restoring, so the trail keeps the restore itself)."""
    dump = schema_dump(url, "predeploy_runs*")
    schema = [line for line in dump.splitlines() if not line.startswith(("--", "\\"))]
    with psycopg.connect(url) as conn:
        tables = [
            t
            for (t,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'predeploy_runs' ORDER BY 1"
            )
        ]
        contents = {
            t: conn.execute(
                "SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), ''))"
                f' FROM "{t}" x'
            ).fetchone()
            for t in tables
        }
    return {"schema": schema, "contents": contents}


def test_backup_is_verified_private_and_described(
    filled: str, make_settings: MakeSettings, tmp_path: Path
) -> None:
    """A backup: 0700 folder, 0600 files, manifest with sha256, state and restore command."""
    settings = make_settings(PREDEPLOY_BACKUP_DIR=str(tmp_path / "b"))
    result = _backup(settings, reason="manual")
    folder = tmp_path / "b" / "staging"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(result.manifest.stat().st_mode) == 0o600
    assert result.path.name.startswith(filled.rsplit("/", 1)[1] + "_")
    assert result.path.name.endswith("Z_manual.dump")
    manifest = json.loads(result.manifest.read_text())
    assert manifest["sha256"] == archive.digest(result.path)[0] == result.sha256
    assert manifest["size"] == result.path.stat().st_size
    assert manifest["migrations"] == {"latest": "1_base", "applied": 1}
    assert {t["name"] for t in manifest["tables"]} >= {"items", "notes", "base"}
    assert manifest["restore_command"] == f"predeploy restore --env staging --backup {result.path}"
    assert manifest["verified"] is True
    assert sorted(p.name for p in folder.iterdir()) == [result.path.name, result.manifest.name]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_round_trip_restores_the_backup_moment(
    filled: str, make_settings: MakeSettings, tmp_path: Path, migrations_dir: Path, jobs: str
) -> None:
    """backup → change data and schema → restore: identical to the backup moment."""
    settings = make_settings(PREDEPLOY_BACKUP_DIR=str(tmp_path / "b"), PREDEPLOY_BACKUP_JOBS=jobs)
    before = fingerprint(filled)
    made = _backup(settings)
    assert made.format == ("directory" if jobs == "2" else "custom")
    write_migrations(
        migrations_dir, {"2_more": "CREATE TABLE later (id int); ALTER TABLE items ADD x int;"}
    )
    migrating.migrate(settings)
    with psycopg.connect(filled) as conn:
        conn.execute("DELETE FROM notes WHERE id < 50")
        conn.execute("UPDATE items SET body = 'changed' WHERE id < 100")
        conn.execute("DROP VIEW item_count")
    assert fingerprint(filled) != before
    chosen = restore.plan(settings, None)
    assert chosen.backup.path == made.path
    assert chosen.current_latest_migration == "2_more"
    done = restore.restore(settings, chosen)
    assert "table public.later" in done.dropped
    assert fingerprint(filled) == before
    assert [e.name for e in current_status(settings).pending] == ["2_more"]


def test_password_never_in_pg_dump_arguments(
    filled: str, make_settings: MakeSettings, tmp_path: Path
) -> None:
    """While pg_dump runs, its /proc/<pid>/cmdline carries no password."""
    password = psycopg.conninfo.conninfo_to_dict(filled)["password"]
    settings = make_settings(PREDEPLOY_BACKUP_DIR=str(tmp_path / "b"))
    with psycopg.connect(filled) as holder:
        holder.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")  # pg_dump waits on it
        worker = threading.Thread(target=_backup, args=(settings,), daemon=True)
        worker.start()
        pid = wait_for_process("pg_dump")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode()
    worker.join(timeout=60)
    assert "dbname=" in cmdline
    assert password and password not in cmdline
    assert password not in environ  # it comes from a 0600 passfile, removed afterwards
    assert "PGPASSFILE=" in environ


def wait_for_process(name: str, timeout: float = 20, argument: str = "--dbname=") -> int:
    """The pid of our child process called ``name`` with ``argument`` on its command line
    (the dump itself, not the `pg_dump --version` probe that picks the program)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
            ours = fields.get("Name") == name and int(fields.get("PPid", "0")) == os.getpid()
            if ours and argument in cmdline:
                return int(entry.name)
        time.sleep(0.05)
    raise AssertionError(f"no {name} process appeared")


def test_killed_pg_dump_leaves_nothing(
    filled: str, make_settings: MakeSettings, tmp_path: Path
) -> None:
    """pg_dump killed mid-run: exit 4, and no file that looks like a backup."""
    settings = make_settings(PREDEPLOY_BACKUP_DIR=str(tmp_path / "b"))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _backup(settings)
        except BackupError as exc:
            errors.append(exc)

    with psycopg.connect(filled) as holder:
        holder.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        os.kill(wait_for_process("pg_dump"), 9)
        worker.join(timeout=30)
    assert len(errors) == 1
    assert errors[0].exit_code == 4 and "was killed by SIGKILL" in str(errors[0])
    assert list((tmp_path / "b" / "staging").iterdir()) == []


def test_failing_pg_dump_names_the_reason(
    pg_server: Server, filled: str, make_settings: MakeSettings, tmp_path: Path
) -> None:
    """pg_dump fails (a role that may not read a table): exit 4 with pg_dump's reason."""
    with psycopg.connect(filled, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS reader")
        conn.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
        conn.execute("GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO reader")
        conn.execute("REVOKE SELECT ON items FROM reader")  # the one it may not read
    url = filled.replace(
        "postgres:" + filled.split(":")[2].split("@", maxsplit=1)[0], "reader:reader-pw"
    )
    settings = make_settings(PREDEPLOY_BACKUP_DIR=str(tmp_path / "b"), DATABASE_URL=url)
    try:
        with pytest.raises(BackupError, match="permission denied for table items"):
            _backup(settings)
    finally:
        with psycopg.connect(filled, autocommit=True) as conn:
            conn.execute("DROP OWNED BY reader")
            conn.execute("DROP ROLE reader")
    assert list((tmp_path / "b" / "staging").iterdir()) == []


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 200 kB filesystem."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@needs_root
def test_full_disk_leaves_nothing(
    filled: str, make_settings: MakeSettings, tiny_disk: Path
) -> None:
    """The disk fills mid-dump: exit 4 saying so, and nothing left behind."""
    grow(filled, 20_000)
    settings = make_settings(PREDEPLOY_BACKUP_DIR=str(tiny_disk))
    with pytest.raises(BackupError, match="No space left on device") as err:
        _backup(settings)
    assert err.value.exit_code == 4
    assert list((tiny_disk / "staging").iterdir()) == []


@needs_root
def test_read_only_folder_is_refused(
    filled: str, make_settings: MakeSettings, tmp_path: Path
) -> None:
    """A backup folder that cannot be written: exit 4 naming it, before pg_dump runs."""
    folder = tmp_path / "ro"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], check=True)
    try:
        with pytest.raises(BackupError, match=rf"backup folder {folder}/staging is not writable"):
            _backup(make_settings(PREDEPLOY_BACKUP_DIR=str(folder)))
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_no_pg_dump_or_an_older_one_is_refused() -> None:
    """No pg_dump, or one older than the server: exit 4 with what to install."""
    old = pgbin.PgProgram(Path("/old/pg_dump"), 15, "15.4", "system")
    with pytest.raises(BackupError, match="no pg_dump/pg_restore found"):
        backup.require_programs(pgbin.choose(18, [], []))
    with pytest.raises(
        BackupError, match=r"pg_dump 15.4 .* is older than the server \(PostgreSQL 18\)"
    ):
        backup.require_programs(pgbin.choose(18, [old], [old]))


def test_retention_keeps_the_newest_and_never_touches_foreign_files(
    filled: str, make_settings: MakeSettings, tmp_path: Path
) -> None:
    """PREDEPLOY_BACKUP_KEEP prunes our oldest backups; foreign files and the newest survive."""
    settings = make_settings(PREDEPLOY_BACKUP_DIR=str(tmp_path / "b"), PREDEPLOY_BACKUP_KEEP="2")
    folder = tmp_path / "b" / "staging"
    folder.mkdir(parents=True)
    foreign = [folder / "hand-made.dump", folder / "notes.json", folder / "other.dump.json"]
    for path in foreign:
        path.write_text("{}")
    made = []
    for _ in range(3):
        made.append(_backup(settings))
    assert made[-1].pruned == (made[0].path,)
    assert not made[0].path.exists() and not made[0].manifest.exists()
    assert all(p.exists() for p in foreign)
    listed = retention.list_backups(settings.backup)
    assert [b.path for b in listed] == [made[2].path, made[1].path]
    aged = make_settings(
        PREDEPLOY_BACKUP_DIR=str(tmp_path / "b"), PREDEPLOY_BACKUP_MAX_AGE_DAYS="0.000001"
    )
    assert retention.prune(aged.backup, keep=made[2].path) == [made[1].path]
    assert made[2].path.exists() and all(p.exists() for p in foreign)


def test_restore_refuses_a_changed_dump(
    filled: str, make_settings: MakeSettings, tmp_path: Path
) -> None:
    """A dump whose bytes changed since verification is not restored."""
    settings = make_settings(PREDEPLOY_BACKUP_DIR=str(tmp_path / "b"))
    made = _backup(settings)
    with psycopg.connect(filled) as conn:
        conn.execute("CREATE TABLE after_backup (id int)")
    data = bytearray(made.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    made.path.write_bytes(bytes(data))
    with pytest.raises(BackupError, match=r"is damaged \(its sha256 or size differs"):
        restore.restore(settings, restore.plan(settings, made.path))
    with psycopg.connect(filled) as conn:
        assert conn.execute("SELECT to_regclass('after_backup')").fetchone() != (None,)


def test_restore_gives_up_on_a_held_table_and_changes_nothing(
    filled: str, make_settings: MakeSettings, tmp_path: Path
) -> None:
    """An application holding a table: the restore stops after PREDEPLOY_LOCK_WAIT, unchanged."""
    settings = make_settings(PREDEPLOY_BACKUP_DIR=str(tmp_path / "b"), PREDEPLOY_LOCK_WAIT="1s")
    made = _backup(settings)
    with psycopg.connect(filled) as conn:
        conn.execute("DELETE FROM notes")
    with psycopg.connect(filled) as app:
        app.execute("SELECT * FROM items LIMIT 1")  # idle in transaction, holding a lock
        started = time.monotonic()
        with pytest.raises(
            BackupError,
            match=r"the database is unchanged \(pid \d+ held a table's lock longer than "
            r"PREDEPLOY_LOCK_WAIT",
        ):
            restore.restore(settings, restore.plan(settings, made.path))
        assert time.monotonic() - started < 20
    with psycopg.connect(filled) as conn:
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (0,)
