"""Engine construction and the unit-of-work helper."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

import storage.db
from storage import make_engine, reader, session_scope, sqlite_url
from storage.models import ConversationRow

pytestmark = pytest.mark.both_databases

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_sqlite_url_points_at_the_data_dir(tmp_path: Path) -> None:
    assert sqlite_url(tmp_path) == f"sqlite:///{tmp_path}/retouch.sqlite3"


def test_session_scope_commits_on_success(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.add(ConversationRow(id="c1", title="t", created_at=NOW, updated_at=NOW))

    with session_scope(engine) as session:
        assert session.get(ConversationRow, "c1") is not None


def test_session_scope_rolls_back_on_error(engine: Engine) -> None:
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        session.add(ConversationRow(id="c1", title="t", created_at=NOW, updated_at=NOW))
        session.flush()
        raise RuntimeError("provider failed")

    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(ConversationRow)) == 0


@pytest.mark.sqlite_only
def test_in_memory_sqlite_gets_pragmas_and_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    engine = make_engine("sqlite://")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.sqlite_only
def test_other_databases_get_connections_tested_as_they_leave_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(storage.db, "create_engine", lambda *args, **kwargs: calls.append((args, kwargs)))

    make_engine("postgresql+psycopg://retouch@db.internal/retouch")

    assert calls == [(("postgresql+psycopg://retouch@db.internal/retouch",), {"pool_pre_ping": True})]


def test_a_connection_the_server_dropped_is_replaced_not_reported(engine: Engine, database: str) -> None:
    """After a PostgreSQL restart (here: the server ends every other session), the next unit of
    work gets a new connection instead of failing once per pooled connection."""
    if database != "postgresql":
        pytest.skip("SQLite has no server to lose")
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(ConversationRow)) == 0
    with engine.connect() as admin:  # a second connection, which ends the pooled one
        admin.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        admin.commit()
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(ConversationRow)) == 0


def _enters_while_a_writer_holds(holder: Engine, other: Engine, *, read_only: bool = False) -> bool:
    """Whether a unit of work on ``other`` (another thread) gets going while one on ``holder`` is open."""
    entered = threading.Event()

    def second() -> None:
        with session_scope(other, read_only=read_only) as session:
            entered.set()
            session.scalar(select(func.count()).select_from(ConversationRow))

    with session_scope(holder) as session:
        session.add(ConversationRow(id="c1", title="t", created_at=NOW, updated_at=NOW))
        session.flush()  # holds SQLite's write lock too
        thread = threading.Thread(target=second)
        thread.start()
        got_in = entered.wait(0.5)
    thread.join(10)
    assert not thread.is_alive() and entered.is_set(), "the second unit runs once the first is done"
    return got_in


@pytest.mark.sqlite_only
def test_a_second_writer_waits_for_the_engines_lock_not_in_sqlite(engine: Engine) -> None:
    assert not _enters_while_a_writer_holds(engine, engine)


def test_readers_do_not_wait_for_the_writer(engine: Engine) -> None:
    assert _enters_while_a_writer_holds(engine, engine, read_only=True)


def test_each_engine_has_its_own_writer_lock(engine: Engine, open_engine: Callable[[], Engine]) -> None:
    # Another engine (another app on the file) is kept apart by SQLite alone, not by this lock.
    assert _enters_while_a_writer_holds(engine, open_engine())


@pytest.mark.sqlite_only
def test_the_reader_begins_without_taking_sqlites_write_lock(engine: Engine, data_dir: Path) -> None:
    writer = sqlite3.connect(data_dir / "retouch.sqlite3", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        with session_scope(reader(engine)) as session:
            assert session.scalar(select(func.count()).select_from(ConversationRow)) == 0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
