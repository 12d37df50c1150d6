"""One running app (on the session emulator) per hostile-visitor test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app_process import AppRun, app_run


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's app keeps its database and images here."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def app(data_dir: Path, emulator_url: str) -> Iterator[AppRun]:
    """The real ``python app.py`` with default settings, its log kept (``app.log_text()``)."""
    with app_run(data_dir, emulator_url) as run:
        yield run
