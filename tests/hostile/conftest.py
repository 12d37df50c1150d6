"""One running app (on the session emulator) per hostile-visitor test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.app_process import AppRun, app_run


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, emulator_url: str) -> Iterator[AppRun]:
    """The real ``python app.py`` with default settings, its log kept (``app.log_text()``)."""
    with app_run(tmp_path_factory.mktemp("data"), emulator_url) as run:
        yield run
