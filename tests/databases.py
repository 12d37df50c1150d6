"""Which database a test's storage runs on: SQLite by default, PostgreSQL as well where asked.

A module (or test) marked ``both_databases`` runs twice, ``[sqlite]`` and ``[postgresql]``;
``sqlite_only`` keeps one of its tests to SQLite (file modes, pragmas, the writer lock). On
PostgreSQL each test gets a fresh database on the run's one server (``tests/postgres.py``),
and every engine the test opens through ``database_url`` (``tests.fakes.migrated_engine``,
the storage fixtures) is on it, whatever data directory it is given: two services on one
data directory are one app restarted, on either backend.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from storage import sqlite_url

__all__ = ["DIALECTS", "database_url", "use"]

DIALECTS = ("sqlite", "postgresql")

_url_for: Callable[[Path], str] = sqlite_url


def database_url(data_dir: Path) -> str:
    """The URL of the database this test's app on ``data_dir`` uses."""
    return _url_for(data_dir)


def use(url_for: Callable[[Path], str]) -> Callable[[Path], str]:
    """Point ``database_url`` elsewhere; returns what it pointed at (the fixture restores it)."""
    global _url_for
    previous, _url_for = _url_for, url_for
    return previous
