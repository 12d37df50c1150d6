"""UI handlers called directly with Gradio-shaped payloads; plus a build_ui smoke test."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from chat.service import ChatService
from chat.ui import build_ui
from chat.ui.events import Handlers, UIConfig
from chat.ui.layout import OPTION_NAMES
from storage import BlobStore, make_engine, migrate, sqlite_url
from tests.chat.test_service import FakeProvider, png, reply_with_image, single_try

DEFAULT_OPTIONS = (
    *("gemini-3.1-flash-image", "auto", "auto", None, None, None, None, None, "", "auto"),
    *("auto", "gpt-image-2", "auto", "auto", "auto", "auto", None, "auto"),
)
CONFIG = UIConfig(
    default_model="gemini-3.1-flash-image", default_openai_model="gpt-image-2", max_upload_bytes=1_000_000
)


class FakeRequest:
    def __init__(self, query: dict[str, str]) -> None:
        self.query_params = query


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
def service(tmp_path: Path, provider: FakeProvider) -> ChatService:
    engine = make_engine(sqlite_url(tmp_path / "data"))
    migrate(engine)
    return ChatService(
        engine=engine, blobs=BlobStore(tmp_path / "data" / "images"), policy=single_try(provider)
    )


@pytest.fixture
def handlers(service: ChatService) -> Handlers:
    return Handlers(service, CONFIG)


async def run(steps) -> list[tuple]:
    return [step async for step in steps]


def test_option_components_match_option_names():
    assert len(DEFAULT_OPTIONS) == len(OPTION_NAMES)


async def test_submit_shows_pending_then_answer(handlers, provider, uploads):
    photo = uploads / "abc" / "photo.png"
    photo.parent.mkdir()
    photo.write_bytes(png((1, 2, 3)))
    provider.queue.append(reply_with_image(png((9, 9, 9)), text="Stormy now."))
    steps = await run(
        handlers.on_submit({"text": "stormy sky", "files": [str(photo)]}, "", None, *DEFAULT_OPTIONS)
    )
    (pending_chat, conversation_id, _, _, _), (final_chat, same_id, _, status, painter) = steps
    assert conversation_id == same_id and conversation_id
    assert pending_chat[-1]["metadata"]["status"] == "pending"
    assert final_chat[-1]["role"] == "assistant"
    assert final_chat[-1]["content"][0].startswith("Stormy now.")
    assert status == ""


async def test_bad_upload_is_a_chat_message_and_nothing_is_stored(handlers, service, uploads):
    bogus = uploads / "notes.png"
    bogus.write_text("not an image")
    steps = await run(handlers.on_submit({"text": "fix", "files": [str(bogus)]}, "", None, *DEFAULT_OPTIONS))
    [(chat, conversation_id, _, _, _)] = steps
    assert conversation_id == ""
    assert "notes.png" in chat[-1]["content"] and "PNG, JPEG or WebP" in chat[-1]["content"]


async def test_files_outside_the_upload_folder_are_refused(handlers, tmp_path, uploads):
    outside = tmp_path / "secret.png"
    outside.write_bytes(png((1, 1, 1)))
    [(chat, _, _, _, _)] = await run(
        handlers.on_submit({"text": "x", "files": [str(outside)]}, "", None, *DEFAULT_OPTIONS)
    )
    assert "could not be found" in chat[-1]["content"]


async def test_oversized_upload_is_refused_before_reading(handlers, uploads):
    big = uploads / "huge.png"
    big.write_bytes(b"\0" * 1_000_001)
    [(chat, _, _, _, _)] = await run(
        handlers.on_submit({"text": "x", "files": [str(big)]}, "", None, *DEFAULT_OPTIONS)
    )
    assert "huge.png" in chat[-1]["content"] and "limit" in chat[-1]["content"]


async def test_empty_message_is_refused(handlers):
    [(chat, _, _, _, _)] = await run(
        handlers.on_submit({"text": "  ", "files": []}, "", None, *DEFAULT_OPTIONS)
    )
    assert "Type what to change" in chat[-1]["content"]


async def test_bad_option_is_a_chat_message(handlers):
    options = list(DEFAULT_OPTIONS)
    options[OPTION_NAMES.index("aspect_ratio")] = "8:1"
    options[0] = "gemini-3-pro-image"
    [(chat, _, _, _, _)] = await run(handlers.on_submit({"text": "x", "files": []}, "", None, *options))
    assert "aspect ratio" in chat[-1]["content"]


async def test_load_reopens_conversation_from_url(handlers, provider):
    provider.queue.append(reply_with_image(png((9, 9, 9))))
    *_, (chat, conversation_id, _, _, _) = await run(
        handlers.on_submit({"text": "a cat", "files": []}, "", None, *DEFAULT_OPTIONS)
    )
    reloaded, same_id, status, _ = await handlers.on_load(FakeRequest({"c": conversation_id}))
    assert reloaded == chat and same_id == conversation_id and status == ""
    missing = await handlers.on_load(FakeRequest({"c": "nope"}))
    assert missing[0] == [] and "does not exist" in missing[2]


async def test_missing_key_is_explained_on_load(service):
    handlers = Handlers(service, UIConfig("m", "gpt-image-2", configured={"gemini": False, "openai": False}))
    _, _, status, _ = await handlers.on_load(FakeRequest({}))
    assert "GEMINI_API_KEY" in status and "OPENAI_API_KEY" in status
    openai_only = Handlers(
        service, UIConfig("m", "gpt-image-2", configured={"gemini": False, "openai": True})
    )
    assert "goes to OpenAI" in (await openai_only.on_load(FakeRequest({})))[2]


async def test_retry_after_failure(handlers, provider):
    from chat.errors import UnavailableError

    provider.queue += [UnavailableError("gemini", "503"), reply_with_image(png((3, 3, 3)))]
    *_, (chat, conversation_id, _, _, _) = await run(
        handlers.on_submit({"text": "x", "files": []}, "", None, *DEFAULT_OPTIONS)
    )
    assert "unavailable" in chat[-1]["content"]
    *_, (chat, _, _) = await run(handlers.on_retry(conversation_id, *DEFAULT_OPTIONS))
    assert isinstance(chat[-1]["content"], list) and chat[-1]["content"][1]["path"].endswith(".png")


def test_build_ui_exposes_the_documented_api(service):
    demo = build_ui(service, CONFIG)
    assert isinstance(demo, gr.Blocks)
    public = {d.api_name for d in demo.fns.values() if d.api_visibility == "public"}
    assert public == {"send", "retry", "conversation", "image"}
