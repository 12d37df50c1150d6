"""The emulator's OpenAI image stream, proved with the official ``openai`` SDK, then read by
OpenAIImagesClient: the same stored answer as a plain call, drafts as progress, faults in the
stream, a model that does not stream, and a Stop that ends the worker thread."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import threading
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image, ImageChops, ImageStat
from pydantic import SecretStr

from chat.domain import GenerationOptions, OpenAIOptions, Phase, Progress
from chat.errors import UnavailableError
from chat.providers.openai import OpenAIImagesClient
from chat.providers.openai.prices import PARTIAL_IMAGE_TOKENS
from tests.chat.providers.test_openai_client import EDIT_HISTORY, load
from tests.emulator import read_provenance
from tests.emulator.fixtures import EmulatorControl, run_emulator
from tests.pictures import picture_png

MODEL = "gpt-image-2"
OPTIONS = GenerationOptions(model="gemini-3.1-flash-image", openai=OpenAIOptions(model=MODEL))


def _difference(a: bytes, b: bytes) -> float:
    with Image.open(io.BytesIO(a)) as first, Image.open(io.BytesIO(b)) as second:
        return sum(ImageStat.Stat(ImageChops.difference(first.convert("RGB"), second.convert("RGB"))).mean)


def test_the_sdk_reads_the_edit_stream(emulator_url: str, emulator: EmulatorControl, tmp_path: Path) -> None:
    source = tmp_path / "photo.png"
    source.write_bytes(picture_png((96, 64)))
    with openai.OpenAI(api_key="test-key", base_url=f"{emulator_url}/v1", max_retries=0) as sdk:
        events = list(
            sdk.images.edit(
                model=MODEL,
                image=source,
                prompt="make it dusk",
                size="1024x1024",
                stream=True,
                partial_images=2,
            )
        )
    *drafts, done = events
    assert [type(e).__name__ for e in events] == [
        "ImageEditPartialImageEvent",
        "ImageEditPartialImageEvent",
        "ImageEditCompletedEvent",
    ]
    assert [d.partial_image_index for d in drafts] == [0, 1]
    assert isinstance(done, openai.types.ImageEditCompletedEvent)
    final = base64.b64decode(done.b64_json)
    images = [base64.b64decode(d.b64_json) for d in drafts]
    assert all(Image.open(io.BytesIO(data)).size == (1024, 1024) for data in [*images, final])
    assert _difference(images[0], final) > _difference(images[1], final) > 0  # each draft is closer
    assert read_provenance(images[1])["partial_image_index"] == 1
    assert read_provenance(final)["input_sha256"] == [hashlib.sha256(source.read_bytes()).hexdigest()]
    assert done.usage.output_tokens == 1056 and done.usage.input_tokens_details.image_tokens > 0
    (entry,) = emulator.requests()
    assert (entry["form"]["stream"], entry["form"]["partial_images"], entry["status"]) == ("true", "2", 200)


def test_the_sdk_reads_the_generation_stream(emulator_url: str, emulator: EmulatorControl) -> None:
    with openai.OpenAI(api_key="test-key", base_url=f"{emulator_url}/v1", max_retries=0) as sdk:
        events = list(sdk.images.generate(model=MODEL, prompt="a lighthouse", stream=True, partial_images=1))
    assert [e.type for e in events] == ["image_generation.partial_image", "image_generation.completed"]
    assert Image.open(io.BytesIO(base64.b64decode(events[-1].b64_json))).size == (1024, 1024)


def test_the_sdk_raises_on_the_error_event(
    emulator_url: str, emulator: EmulatorControl, tmp_path: Path
) -> None:
    source = tmp_path / "photo.png"
    source.write_bytes(picture_png((32, 32)))
    with openai.OpenAI(api_key="test-key", base_url=f"{emulator_url}/v1", max_retries=0) as sdk:
        stream = sdk.images.edit(
            model=MODEL, image=source, prompt="x [fault:stream_error]", stream=True, partial_images=2
        )
        with pytest.raises(openai.APIError, match="The server had an error"):
            list(stream)


def _client(emulator_url: str, **kwargs: object) -> OpenAIImagesClient:
    return OpenAIImagesClient(
        httpx.Client(), api_key=SecretStr("test-key"), base_url=f"{emulator_url}/v1", **kwargs
    )  # type: ignore[arg-type]


async def test_the_client_stores_what_a_plain_call_stores(
    emulator_url: str, emulator: EmulatorControl
) -> None:
    shown: list[Progress] = []
    streamed = await _client(emulator_url).reply(EDIT_HISTORY, OPTIONS, load, progress=shown.append)
    plain = await _client(emulator_url, stream=False).reply(EDIT_HISTORY, OPTIONS, load)
    assert streamed.parts == plain.parts and streamed.parts[0].sha256 == plain.parts[0].sha256
    assert streamed.usage.image_tokens == plain.usage.image_tokens + 2 * PARTIAL_IMAGE_TOKENS
    assert streamed.usage.input_tokens == plain.usage.input_tokens
    assert [p.phase for p in shown] == [Phase.WAITING, Phase.DRAFT, Phase.DRAFT, Phase.FINAL]
    assert [len(p.drafts) for p in shown] == [0, 1, 2, 2] and shown[-1].drafts_expected == 2
    assert all(Image.open(io.BytesIO(d.data)).format == "PNG" for d in shown[-1].drafts)
    assert [e["form"].get("stream") for e in emulator.requests()] == ["true", None]


async def test_a_model_that_does_not_stream_is_asked_plainly(
    emulator_url: str, emulator: EmulatorControl
) -> None:
    options = GenerationOptions(model="m", openai=OpenAIOptions(model="chatgpt-image-latest"))
    reply = await _client(emulator_url).reply(EDIT_HISTORY, options, load)
    assert reply.final_image() is not None
    assert [(e["form"].get("stream"), e["status"]) for e in emulator.requests()] == [(None, 200)]


@pytest.mark.parametrize("fault", ["stream_cut", "stream_error"])
async def test_a_stream_that_fails_midway_is_unavailable(
    emulator_url: str, emulator: EmulatorControl, fault: str
) -> None:
    emulator.queue_faults(f"openai:{fault}")
    shown: list[Progress] = []
    with pytest.raises(UnavailableError):
        await _client(emulator_url).reply(EDIT_HISTORY, OPTIONS, load, progress=shown.append)
    assert [p.phase for p in shown] == [Phase.WAITING, Phase.DRAFT]  # the first draft was shown


async def test_stop_ends_the_worker_thread_between_drafts() -> None:
    """The emulator holds the second draft for 30 s; Stop after the first must end the read at once."""
    first_draft = threading.Event()
    ended = threading.Event()
    outcome: list[BaseException] = []

    def watch(snapshot: Progress) -> None:
        if snapshot.phase is Phase.DRAFT:
            first_draft.set()

    with run_emulator(latency_ms=60_000) as url:
        provider = _client(url)
        original = provider._streamed  # noqa: SLF001 (the thread's own exit is what is checked)

        def streamed(*args: object) -> object:
            try:
                return original(*args)  # type: ignore[arg-type]
            except BaseException as exc:
                outcome.append(exc)
                raise
            finally:
                ended.set()

        provider._streamed = streamed  # type: ignore[method-assign]  # noqa: SLF001
        task = asyncio.ensure_future(provider.reply(EDIT_HISTORY, OPTIONS, load, progress=watch))
        assert await asyncio.to_thread(first_draft.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(ended.wait, 5)  # not the 30 s until the next draft
    assert [type(e).__name__ for e in outcome] == ["StoppedReading"]
