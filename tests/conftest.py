"""Shared fixtures (the emulator's live with the emulator), the databases, and the ``system`` marker.

A test is a system test when it talks to a real server over loopback: it uses the emulator
(directly or through the app), runs on PostgreSQL, or its module says so with ``pytestmark``.
Everything else is the fast layer: ``pytest -m "not system"``.

Storage runs on SQLite unless a test is marked ``both_databases``: then it runs on each of
``tests.databases.DIALECTS`` (``sqlite_only`` opts one test out), PostgreSQL on one server
per run that the first such test starts (``tests/postgres.py``). Tests of object storage use
``s3``: one moto S3 server per run (``tests/s3.py``), a fresh bucket per test (``s3_bucket``).
"""

from collections.abc import Iterator

import pytest

from tests import databases
from tests.emulator.fixtures import emulator, emulator_url  # noqa: F401
from tests.postgres import PostgresServer, start_postgres
from tests.s3 import S3Server, start_s3

_SERVERS = {"emulator", "emulator_url", "s3", "s3_bucket"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    definition = metafunc.definition
    if definition.get_closest_marker("both_databases") and not definition.get_closest_marker("sqlite_only"):
        metafunc.parametrize("database", databases.DIALECTS, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("database") == "postgresql"
        if on_postgres or _SERVERS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.system)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    server = start_s3()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3: S3Server) -> str:
    return s3.fresh_bucket()


@pytest.fixture(autouse=True)
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's dialect; on PostgreSQL, a fresh database that ``databases.database_url`` names."""
    dialect = getattr(request, "param", "sqlite")
    if dialect == "sqlite":
        yield dialect
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = server.fresh_database()
    previous = databases.use(lambda _data_dir: server.url(name))
    try:
        yield dialect
    finally:
        databases.use(previous)
        server.drop_database(name)
