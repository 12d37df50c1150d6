"""Shared locks: one holder among every process on a database, released when its block or its process ends."""

from __future__ import annotations

import logging
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from storage import locks, make_engine
from storage.db import DB_FILENAME
from tests.databases import database_url

pytestmark = pytest.mark.both_databases

ROOT = Path(__file__).resolve().parents[2]
JOIN_TIMEOUT_S = 30


def test_a_second_holder_is_refused_while_the_first_holds_and_served_after(
    open_engine: Callable[[], Engine],
) -> None:
    first, second = open_engine(), open_engine()  # two replicas

    with locks.exclusive(first, locks.SWEEP) as held:
        assert held
        with locks.exclusive(second, locks.SWEEP, wait=False) as refused:
            assert not refused
        with locks.exclusive(second, locks.MIGRATIONS, wait=False) as other:
            assert other  # another lock is another lock

    with locks.exclusive(second, locks.SWEEP, wait=False) as after:
        assert after


class _Announcements(logging.Handler):
    """Sets ``waiting`` when a lock says it waits for another process."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("waiting for another process"):
            self.waiting.set()


def test_a_waiting_holder_gets_the_lock_once_the_first_releases_it(
    open_engine: Callable[[], Engine], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = open_engine(), open_engine()
    caplog.set_level(logging.INFO, logger="retouch.storage")
    announcements = _Announcements()
    logging.getLogger("retouch.storage").addHandler(announcements)
    order: list[str] = []

    def take_it() -> None:
        with locks.exclusive(second, locks.MIGRATIONS):
            order.append("second holds it")

    try:
        with locks.exclusive(first, locks.MIGRATIONS):
            waiter = threading.Thread(target=take_it)
            waiter.start()
            assert announcements.waiting.wait(JOIN_TIMEOUT_S)
            assert order == []
            order.append("first releases it")
        waiter.join(JOIN_TIMEOUT_S)
    finally:
        logging.getLogger("retouch.storage").removeHandler(announcements)

    assert order == ["first releases it", "second holds it"]


_HOLD_UNTIL_KILLED = """
import sys
from storage import locks, make_engine
with locks.exclusive(make_engine(sys.argv[1]), locks.MIGRATIONS):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.system  # a process
def test_the_lock_of_a_process_that_died_is_free(data_dir: Path, open_engine: Callable[[], Engine]) -> None:
    engine = open_engine()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_UNTIL_KILLED, database_url(data_dir)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with locks.exclusive(engine, locks.MIGRATIONS, wait=False) as held:
            assert not held
    finally:
        holder.kill()
        holder.wait(JOIN_TIMEOUT_S)

    taken = threading.Event()

    def take_it() -> None:
        with locks.exclusive(engine, locks.MIGRATIONS):
            taken.set()

    threading.Thread(target=take_it, daemon=True).start()
    assert taken.wait(JOIN_TIMEOUT_S)


def test_no_transaction_stays_open_while_the_lock_is_held(
    open_engine: Callable[[], Engine], database: str
) -> None:
    engine = open_engine()
    with locks.exclusive(engine, locks.SWEEP):
        if database == "postgresql":
            with engine.connect() as conn:
                states = conn.execute(
                    text(
                        "SELECT state FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalars()
                assert set(states) == {"idle"}
        else:  # another writer can begin at once
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE written_meanwhile (id INTEGER)"))


@pytest.mark.sqlite_only
def test_sqlite_locks_are_private_files_beside_the_database(data_dir: Path, engine: Engine) -> None:
    with locks.exclusive(engine, locks.SWEEP):
        pass
    lock_file = data_dir / f"{DB_FILENAME}.sweep.lock"
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
    assert (data_dir / f"{DB_FILENAME}.migrate.lock").exists()  # the engine fixture migrated


@pytest.mark.sqlite_only
def test_an_in_memory_database_needs_no_lock(tmp_path: Path) -> None:
    engine = make_engine("sqlite://")
    with locks.exclusive(engine, locks.SWEEP) as held, locks.exclusive(engine, locks.SWEEP) as again:
        assert held and again
    assert list(tmp_path.iterdir()) == []
