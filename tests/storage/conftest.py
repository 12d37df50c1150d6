"""Storage fixtures: a fresh, fully migrated database per test (SQLite, or PostgreSQL too: tests/databases.py), disposed afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from storage import DiskBlobStore, make_engine, migrate
from tests.databases import database_url


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def open_engine(data_dir: Path) -> Iterator[Callable[[], Engine]]:
    """Open (another) engine on the test's database; every one is disposed at teardown."""
    engines: list[Engine] = []

    def _open() -> Engine:
        engine = make_engine(database_url(data_dir))
        engines.append(engine)
        return engine

    yield _open
    for engine in engines:
        engine.dispose()


@pytest.fixture
def engine(open_engine: Callable[[], Engine]) -> Engine:
    engine = open_engine()
    migrate(engine)
    return engine


@pytest.fixture
def blobs(tmp_path: Path) -> DiskBlobStore:
    return DiskBlobStore(tmp_path / "blobs")
