"""The page's handlers on real storage in tmp_path, answered by a fake provider."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from chat.conversation.service import ChatService
from chat.limits.guard import Guard, Limits
from chat.sharing.library import ConversationLibrary
from chat.ui.events import Handlers
from chat.ui.files import FileMaker
from chat.ui.layout import build_layout
from chat.ui.library_events import LibraryHandlers
from storage import DiskBlobStore
from tests.chat.ui.test_events import CONFIG
from tests.fakes import FakeProvider, migrated_engine, single_try


@pytest.fixture
def uploads(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "gradio-uploads"
    root.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(root))
    return root


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def engine(tmp_path: Path):
    return migrated_engine(tmp_path / "data")


@pytest.fixture
def guard(request: pytest.FixtureRequest, engine) -> Guard | None:
    """No limits, unless a test asks for them with the daily cap as the parameter (``indirect``)."""
    cap = getattr(request, "param", None)
    return None if cap is None else Guard(Limits(daily_spend_usd=cap), engine=engine)


@pytest.fixture
def service(engine, tmp_path: Path, provider: FakeProvider, guard: Guard | None) -> ChatService:
    return ChatService(
        engine=engine,
        blobs=DiskBlobStore(tmp_path / "data" / "images"),
        policy=single_try(provider),
        guard=guard,
    )


@pytest.fixture
def library(engine, service: ChatService, tmp_path: Path) -> ConversationLibrary:
    return ConversationLibrary(
        engine=engine, blobs=DiskBlobStore(tmp_path / "data" / "images"), gate=service.gate
    )


@pytest.fixture
def page(service: ChatService, library: ConversationLibrary, tmp_path: Path):
    with gr.Blocks():
        ui = build_layout(CONFIG.default_model, CONFIG.default_openai_model, browser_secret="s" * 32)
    files = FileMaker(service.image_path, tmp_path / "files")
    handlers = Handlers(service, library, CONFIG, ui, files)
    return ui, handlers, LibraryHandlers(handlers, service, library, files)
