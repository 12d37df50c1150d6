"""Engine construction and the unit-of-work helper."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

import storage.db
from storage import make_engine, session_scope, sqlite_url
from storage.models import ConversationRow

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


def test_in_memory_sqlite_gets_pragmas_and_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    engine = make_engine("sqlite://")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
    assert list(tmp_path.iterdir()) == []


def test_other_databases_are_passed_through(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(storage.db, "create_engine", lambda *args, **kwargs: calls.append((args, kwargs)))

    make_engine("postgresql+psycopg://retouch@db.internal/retouch")

    assert calls == [(("postgresql+psycopg://retouch@db.internal/retouch",), {})]
