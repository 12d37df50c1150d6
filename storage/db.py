"""Engine and transaction helpers; built by the app at startup, never at import.

SQLite needs per-connection setup to behave like a real database: foreign keys are off unless
asked for, WAL lets the UI read while a turn is being written, and ``busy_timeout`` makes a
second writer wait instead of failing at once. Python's sqlite3 module also skips BEGIN before
DDL and SAVEPOINT ("legacy transaction control"), which would make a migration that fails
half-way stick; so SQLAlchemy is put in charge of BEGIN (the recipe from SQLAlchemy's SQLite
docs). Other URLs (Postgres later) pass through unchanged.

One writer at a time per SQLite engine, queued on a Python lock rather than in SQLite: a writer
that finds the database locked sleeps in SQLite's busy handler with growing back-offs (up to
100 ms per try), long after the lock is free, while a Python lock wakes the next writer at once.
The lock belongs to the engine (an execution option ``make_engine`` sets), so whoever was given
the engine shares its lock, and two engines (two apps, two tests) never do: there is no
process-wide registry. Other processes on the same file are still kept apart by SQLite itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session

__all__ = ["DB_FILENAME", "make_engine", "reader", "session_scope", "sqlite_file", "sqlite_url"]

DB_FILENAME = "retouch.sqlite3"
_WRITER_LOCK = "retouch_writer_lock"  # execution option: the engine's writer lock (module docstring)
_READ_ONLY = "retouch_read_only"  # execution option: BEGIN rather than BEGIN IMMEDIATE
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
    "PRAGMA synchronous=NORMAL",
)


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir) / DB_FILENAME}"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their directory, 0o600 mode, pragmas and a writer lock."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # A pooled connection may have died with its server (a restart, a failover): test each
        # one as it leaves the pool, so the request gets a new connection rather than an error.
        return create_engine(url, pool_pre_ping=True)
    db_file = sqlite_file(parsed)
    if db_file is not None:
        _create_private_file(db_file)
    engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    # Reentrant: a write unit nested in another on the same thread then fails in SQLite (busy_timeout)
    # as it did before, rather than hanging here for ever.
    return engine.execution_options(**{_WRITER_LOCK: threading.RLock()})


def reader(engine: Engine) -> Engine:
    """``engine`` for reading only: on SQLite its transactions begin with BEGIN, so they neither
    take the write lock nor wait for a writer (WAL lets them read meanwhile)."""
    return engine.execution_options(**{_READ_ONLY: True})


@contextmanager
def session_scope(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """One unit of work: commit if the block succeeds, roll everything back if it raises.

    On SQLite a unit of work takes the write lock when it starts (BEGIN IMMEDIATE): a
    transaction that reads and then writes would otherwise fail with "database is locked"
    as soon as another writer committed in between. ``read_only`` units just read (BEGIN).
    """
    bind = reader(engine) if read_only else engine
    writer = None if read_only else engine.get_execution_options().get(_WRITER_LOCK)
    with writer or nullcontext(), Session(bind) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for in-memory and ``file:`` URI databases."""
    database = url.database
    if not database or database == ":memory:" or url.query.get("uri") or database.startswith("file:"):
        return None
    return Path(database)


def _create_private_file(db_file: Path) -> None:
    # Create the (empty, hence valid) database file ourselves so it is born 0o600; SQLite gives
    # its -wal and -shm files the same mode as the database file.
    db_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(db_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    os.chmod(db_file, 0o600)


def _on_sqlite_connect(dbapi_connection: DBAPIConnection, _connection_record: ConnectionPoolEntry) -> None:
    # Hand BEGIN over to SQLAlchemy (see module docstring), then set the pragmas; both must
    # happen outside a transaction, which is the state of a fresh connection.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    read_only = connection.get_execution_options().get(_READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
