"""PostgreSQL 15's programs found where a system installs them (needs PostgreSQL 15)."""

from __future__ import annotations

from pathlib import Path

from predeploy.programs import pgbin
from support.pg15 import PG15_BIN, client_programs_only, needs_pg15


@needs_pg15
def test_a_major_versions_server_programs_are_found_in_its_layout_or_only_the_set_folder(
    tmp_path: Path,
) -> None:
    """PostgreSQL 15's server programs: found in Debian's layout; with PREDEPLOY_PG_BIN_DIR
    set, only there (a client-only folder has none; another major's folder does not count);
    a major nobody installed names the usual layouts it looked in."""
    found, _ = pgbin.server_bin_dir(15, None, tmp_path / "cache")
    assert found == PG15_BIN
    client = client_programs_only(tmp_path / "client")
    assert pgbin.server_bin_dir(15, client, tmp_path / "cache") == (None, [client])
    assert pgbin.server_bin_dir(15, PG15_BIN, tmp_path / "cache") == (PG15_BIN, [PG15_BIN])
    assert pgbin.server_bin_dir(16, PG15_BIN, tmp_path / "cache")[0] is None
    missing, looked = pgbin.server_bin_dir(99, None, tmp_path / "cache")
    assert missing is None
    assert {Path("/usr/lib/postgresql/99/bin"), Path("/usr/pgsql-99/bin"),
            Path("/opt/homebrew/opt/postgresql@99/bin")} <= set(looked)  # fmt: skip
