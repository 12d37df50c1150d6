"""Shared fixtures (the emulator's live with the emulator) and the ``system`` marker.

A test is a system test when it talks to a real server over loopback: it uses the emulator
(directly or through the app) or its module says so with ``pytestmark``. Everything else is
the fast layer: ``pytest -m "not system"``.
"""

import pytest

from tests.emulator.fixtures import emulator, emulator_url  # noqa: F401

_SERVERS = {"emulator", "emulator_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _SERVERS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.system)
