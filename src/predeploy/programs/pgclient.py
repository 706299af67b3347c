"""How a PostgreSQL client program (pg_dump, pg_restore, psql) reaches the database.

A conninfo safe for argv (no password), an environment from the runner's allowlist, and
the password in a passfile that never touches disk (``memfd_create``,
``PGPASSFILE=/dev/fd/N``), inherited by the programs it is passed to and no others.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from psycopg.conninfo import make_conninfo

from predeploy.programs.run import child_env

__all__ = ["ClientRun", "client"]

# options of a newer libpq (psycopg's) that it reports at their built-in value: an older
# client program (pg_dump 15 for a PostgreSQL 15 server) refuses the names it does not know
_NEWER_LIBPQ_DEFAULTS = {
    "sslcertmode": "allow",
    "sslnegotiation": "postgres",
    "load_balance_hosts": "disable",
    "require_auth": "",
}


@dataclass(frozen=True)
class ClientRun:
    """How a PostgreSQL client program reaches the database: argv-safe conninfo, environment
    (the passfile) and the descriptor it must inherit."""

    conninfo: str
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()


@contextmanager
def client(
    params: Mapping[str, str], password: str | None, application_name: str
) -> Iterator[ClientRun]:
    """The conninfo and environment for one client program run.

    ``params`` are libpq parameters without the password; ``password`` is the one libpq
    resolved for this process's own connection (URL, PGPASSWORD, PGPASSFILE or ~/.pgpass),
    handed over in a passfile that exists only in memory and is closed afterwards.
    """
    safe = {
        k: v
        for k, v in params.items()
        if k not in ("password", "passfile") and _NEWER_LIBPQ_DEFAULTS.get(k) != v
    }
    safe["application_name"] = application_name
    conninfo = make_conninfo("", **safe)
    if not password:
        yield ClientRun(conninfo, child_env())
        return
    fd = os.memfd_create("predeploy-pgpass", os.MFD_CLOEXEC)
    try:
        os.fchmod(fd, 0o600)  # libpq ignores a passfile others could read
        os.write(fd, f"*:*:*:*:{_escape(password)}\n".encode())
        # inherited by the programs it is passed to (pass_fds) and no others: sh closes
        # every other descriptor in its children
        os.set_inheritable(fd, True)
        yield ClientRun(conninfo, child_env({"PGPASSFILE": f"/dev/fd/{fd}"}), (fd,))
    finally:
        os.close(fd)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")
