"""A real PostgreSQL server for the tests: a throw-away cluster on loopback, one per test run.

``make test`` installs Debian's ``postgresql`` package where it is missing; this module only
uses its binaries (``initdb`` and ``postgres``, found on PATH or under /usr/lib/postgresql).
The cluster lives in a temporary directory, listens on 127.0.0.1 on a free port, trusts local
connections and skips fsync (a test database needs no durability; ``durable=True`` for benchmarks). It stops by itself: when
the test run ends (``stop``), when the process that started it dies (the kernel sends it a
signal: ``PR_SET_PDEATHSIG``), and at the latest after ``MAX_LIFETIME_S`` (``timeout``).

Each test gets a database of its own (``fresh_database``), dropped again afterwards.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.app_process import free_port
from tests.servers import dies_with_parent

__all__ = ["PostgresServer", "start_postgres"]

MAX_LIFETIME_S = 3 * 60 * 60  # longer than CI's 90 minutes: a safety net, not a deadline
_MISSING = (
    "The PostgreSQL tests need Debian's postgresql package (initdb and postgres): run `make test`, "
    "which installs it, or `apt-get install postgresql` as root."
)


@dataclass
class PostgresServer:
    """One running cluster; ``url(name)`` is the SQLAlchemy URL of one of its databases."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    _names: itertools.count[int]

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def fresh_database(self) -> str:
        """A new, empty database; its name."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: roll back, disconnect, exit
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        )


def start_postgres(*, durable: bool = False) -> PostgresServer:
    """initdb a new cluster and start it; ready to take connections when this returns.

    ``durable``: fsync and synchronous commit on, as a server would run (benchmarks); tests skip them.
    """
    bin_dir = _bin_dir()
    directory = Path(tempfile.mkdtemp(prefix="retouch-pg-"))
    user = _run_as()
    if user is not None:  # initdb and postgres refuse to run as root
        shutil.chown(directory, user)
    data = directory / "data"
    subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        user=user,
    )
    port = free_port()
    command = [
        "timeout", "-s", "INT", str(MAX_LIFETIME_S),
        str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
        "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={directory}",
        "-c", "max_connections=200",
    ]  # fmt: skip
    if not durable:
        command += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    log = open(directory / "server.log", "wb")  # noqa: SIM115 - the server writes it while it runs
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, user=user, preexec_fn=dies_with_parent(signal.SIGINT)
    )
    server = PostgresServer(port, directory, process, itertools.count())
    _wait_until_ready(server, directory / "server.log")
    return server


def _bin_dir() -> Path:
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(os.path.realpath(initdb)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError(_MISSING)
    return Path(found[-1]).parent


def _run_as() -> str | None:
    return "postgres" if os.geteuid() == 0 else None


def _wait_until_ready(server: PostgresServer, log: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"PostgreSQL did not start:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            server._admin().close()
            return
        except psycopg.OperationalError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"PostgreSQL did not accept connections within {timeout_s:.0f} s")
