"""A service on real storage in tmp_path, answered by a fake provider: for the service's tests
that need nothing more (a module defines its own fixture of the same name when it does)."""

from __future__ import annotations

import pytest

from tests.fakes import FakeProvider, make_service, migrated_engine


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def engine(tmp_path):
    return migrated_engine(tmp_path / "data")


@pytest.fixture
def service(tmp_path, provider, engine):
    return make_service(tmp_path / "data", provider, engine=engine)
