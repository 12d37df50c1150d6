"""Locks every process on one database shares: one replica migrates, one sweeps.

A lock is held for as long as a ``with`` block runs and needs no transaction open meanwhile:

- PostgreSQL: a session-level advisory lock (``pg_advisory_lock``) on a connection of its own,
  in autocommit, so no transaction stays open; it dies with its connection, hence with a
  replica that crashed.
- SQLite: ``flock`` on a file beside the database (``retouch.sqlite3.<name>.lock``, 0600);
  the kernel drops it when the process that held it dies. An in-memory or ``file:`` URI
  database belongs to one process, which needs no lock against itself.

``wait=False`` asks once and yields False if another process holds the lock (a sweep that
another replica is running need not run twice); the default waits for it, saying so in the log.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from storage.db import sqlite_file

__all__ = ["MIGRATIONS", "SWEEP", "SharedLock", "exclusive"]

log = logging.getLogger("retouch.storage")
_FILE_MODE = 0o600


@dataclass(frozen=True)
class SharedLock:
    """A lock by name: ``name`` names its SQLite lock file, ``key`` is its PostgreSQL advisory key."""

    name: str
    key: int


# Keys read as ASCII "RETOUCH" and a number (0x52 45 54 4f 55 43 48 ..): recognisable in pg_locks.
MIGRATIONS = SharedLock("migrate", 0x5245544F55434801)
SWEEP = SharedLock("sweep", 0x5245544F55434802)


@contextmanager
def exclusive(engine: Engine, lock: SharedLock, *, wait: bool = True) -> Iterator[bool]:
    """Hold ``lock`` among every process using ``engine``'s database while the block runs.

    Yields True once held; with ``wait=False``, False at once if another process holds it.
    """
    dialect = engine.dialect.name
    if dialect == "postgresql":
        with _advisory_lock(engine, lock, wait=wait) as held:
            yield held
    elif dialect == "sqlite":
        database = sqlite_file(engine.url)
        if database is None:
            yield True
        else:
            with _file_lock(database.with_name(f"{database.name}.{lock.name}.lock"), lock, wait=wait) as held:
                yield held
    else:
        raise NotImplementedError(f"no shared lock for the {dialect} dialect")


@contextmanager
def _advisory_lock(engine: Engine, lock: SharedLock, *, wait: bool) -> Iterator[bool]:
    conn = engine.connect()
    try:
        conn.execution_options(isolation_level="AUTOCOMMIT")  # a session lock: no transaction held open
        held = _ask(conn, "SELECT pg_try_advisory_lock(:key)", lock)
        if not held and wait:
            log.info("waiting for another process to release the %s lock", lock.name)
            _ask(conn, "SELECT pg_advisory_lock(:key)", lock)
            held = True
        if not held:
            yield False
            return
        try:
            yield True
        finally:
            try:
                _ask(conn, "SELECT pg_advisory_unlock(:key)", lock)
            except Exception:
                # The lock lives as long as its session: ending the session releases it too, and
                # the pool never hands out a connection that still holds it.
                log.warning("could not release the %s lock; closing its connection instead", lock.name)
                conn.invalidate()
    finally:
        conn.close()


def _ask(conn: Connection, sql: str, lock: SharedLock) -> bool:
    return bool(conn.scalar(text(sql), {"key": lock.key}))


@contextmanager
def _file_lock(path: Path, lock: SharedLock, *, wait: bool) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
    try:
        os.fchmod(fd, _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = False
        if not held and wait:
            log.info("waiting for another process to release the %s lock (%s)", lock.name, path)
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = True
        yield held
    finally:
        os.close(fd)  # closing the descriptor releases the lock
