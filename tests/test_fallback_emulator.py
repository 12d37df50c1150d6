"""Gemini failure classes -> OpenAI fallback, with the real clients, storage and the emulator.

For each way Gemini can fail: OpenAI gets exactly the previous output's bytes, the answer
is stored and attributed, and the next Gemini turn accepts the history that now holds an
OpenAI image. When OpenAI fails too: one clear error turn, the message kept, Retry works.
"""

from __future__ import annotations

import base64
import hashlib

import httpx
import pytest
from PIL import Image
from pydantic import SecretStr

from chat.conversation.cache import CachedProvider, ReplyCache
from chat.conversation.fallback import FallbackPolicy
from chat.conversation.service import Attachment, ChatService
from chat.domain import GenerationOptions, TurnStatus
from chat.errors import InputError
from chat.providers.gemini import GeminiClient
from chat.sharing.access import Actor
from chat.ui.render import attempts_summary
from storage import DiskBlobStore, make_engine, migrate, sqlite_url
from tests.fakes import emulator_providers, last, make_service, no_sleep
from tests.pictures import painted_png, png

OPTIONS = GenerationOptions(model="gemini-3.1-flash-image")
ACTOR = Actor("owner-of-the-test-conversations")
PHOTO = png((90, 140, 200), (96, 64))


@pytest.fixture
async def service(tmp_path, emulator):
    with httpx.Client() as http:
        providers = emulator_providers(http, emulator.url, "test-key", timeout_s=10)
        policy = FallbackPolicy(providers, sleep=no_sleep, jitter=lambda d: d)
        yield make_service(tmp_path, policy=policy)


def requests_of(emulator, provider: str) -> list[dict]:
    return [r for r in emulator.requests() if r["provider"] == provider]


@pytest.mark.parametrize(
    ("fault", "gemini_calls"),
    [
        ("429", 3),
        ("500", 3),
        ("503", 3),
        ("504", 3),
        ("malformed", 3),
        ("block", 1),
        ("image_safety", 1),
        ("no_image", 1),
        ("text_only", 1),
        ("empty", 1),
    ],
)
async def test_gemini_failure_falls_back_to_openai_with_the_previous_output(
    service, emulator, fault, gemini_calls
):
    first = await last(
        service.send(ACTOR, None, "make the sky stormy", [Attachment("street.png", PHOTO)], options=OPTIONS)
    )
    previous = first.turns[-1].shown_image()
    previous_bytes = service.image_path(previous).read_bytes()
    emulator.clear_requests()
    emulator.queue_faults(*[f"gemini:{fault}"] * gemini_calls)

    second = await last(service.send(ACTOR, first.id, "now remove the car", options=OPTIONS))

    answer = second.turns[-1]
    assert answer.status is TurnStatus.OK and answer.provider == "openai"
    assert [a.provider for a in answer.attempts] == ["gemini"] * gemini_calls + ["openai"]
    assert attempts_summary(answer).endswith("\u2192 OpenAI gpt-image-2")
    [edit] = requests_of(emulator, "openai")
    [image_file] = [f for f in edit["files"] if f["field"] == "image"]
    assert image_file["sha256"] == hashlib.sha256(previous_bytes).hexdigest() == previous.sha256
    assert edit["form"]["prompt"].startswith("now remove the car")
    stored = service.image_path(answer.shown_image()).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == answer.shown_image().sha256

    emulator.clear_requests()
    third = await last(service.send(ACTOR, first.id, "warmer light", options=OPTIONS))
    assert third.turns[-1].provider == "gemini" and third.turns[-1].status is TurnStatus.OK
    [replay] = requests_of(emulator, "gemini")
    assert replay["status"] == 200
    user_images = [
        base64.b64decode(p["inlineData"]["data"])
        for content in replay["body"]["contents"]
        if content["role"] == "user"
        for p in content["parts"]
        if "inlineData" in p
    ]
    assert stored in user_images  # the OpenAI result re-enters as a user-supplied "current image"


async def test_openai_failing_too_gives_one_clear_error_and_retry_works(service, emulator):
    first = await last(
        service.send(ACTOR, None, "make the sky stormy", [Attachment("street.png", PHOTO)], options=OPTIONS)
    )
    emulator.queue_faults(*["gemini:503"] * 3, *["openai:503"] * 3)

    failed = await last(service.send(ACTOR, first.id, "now remove the car", options=OPTIONS))

    user, error = failed.turns[-2:]
    assert user.text() == "now remove the car"
    assert error.status is TurnStatus.ERROR and failed.awaiting_answer()
    assert error.error.message.startswith("Gemini is unavailable right now")
    assert "Tried OpenAI too: OpenAI is unavailable right now" in error.error.message
    assert [a.provider for a in error.attempts] == ["gemini"] * 3 + ["openai"] * 3

    retried = await last(service.retry(ACTOR, first.id, options=OPTIONS))
    assert retried.turns[-1].status is TurnStatus.OK and retried.turns[-1].provider == "gemini"
    assert [t.text() for t in retried.turns if t.role.value == "user"] == [
        "make the sky stormy",
        "now remove the car",
    ]


async def test_painted_region_reaches_openai_as_a_mask_of_the_same_size(service, emulator):
    first = await last(
        service.send(ACTOR, None, "a street", [Attachment("street.png", PHOTO)], options=OPTIONS)
    )
    previous = first.turns[-1].shown_image()
    width, height = Image.open(service.image_path(previous)).size
    painted = painted_png((width, height), (0, 0, width // 2, height // 2))
    emulator.clear_requests()

    done = await last(
        service.send(ACTOR, first.id, "remove it [fault:gemini:no_image]", options=OPTIONS, painted=painted)
    )

    assert done.turns[-1].provider == "openai"
    [edit] = requests_of(emulator, "openai")
    assert {f["field"] for f in edit["files"]} == {"image", "mask"}
    [gemini_request] = requests_of(emulator, "gemini")
    texts = [p.get("text", "") for p in gemini_request["body"]["contents"][-1]["parts"]]
    assert any("magenta" in t for t in texts)


async def test_cost_is_estimated_per_turn_and_summed_per_conversation(service):
    first = await last(
        service.send(ACTOR, None, "make the sky stormy", [Attachment("street.png", PHOTO)], options=OPTIONS)
    )
    second = await last(service.send(ACTOR, first.id, "warmer light", options=OPTIONS))
    costs = [t.cost_usd for t in second.turns if t.role.value == "assistant"]
    assert all(c is not None and 0.05 < c < 0.2 for c in costs)  # ~1120 image tokens at $60/1M plus input
    assert second.cost_usd() == pytest.approx(sum(costs))


async def test_budget_stops_before_a_turn_could_exceed_it(service, emulator):
    first = await last(service.send(ACTOR, None, "a lighthouse", options=OPTIONS))
    tight = GenerationOptions(model="gemini-3.1-flash-image", budget_usd=first.cost_usd() + 0.01)
    emulator.clear_requests()
    with pytest.raises(InputError, match="budget"):
        await last(service.send(ACTOR, first.id, "warmer", options=tight))
    assert emulator.requests() == []
    assert len((await service.load(ACTOR, first.id)).turns) == 2


async def test_identical_request_with_a_fixed_seed_is_served_from_the_cache(tmp_path, emulator):
    engine = make_engine(sqlite_url(tmp_path / "cache"))
    migrate(engine)
    blobs = DiskBlobStore(tmp_path / "cache" / "images")
    with httpx.Client() as http:
        gemini = CachedProvider(
            GeminiClient(http, api_key=SecretStr("test-key"), base_url=emulator.url),
            ReplyCache(engine, blobs),
        )
        service = ChatService(engine=engine, blobs=blobs, policy=FallbackPolicy({"gemini": gemini}))
        seeded = GenerationOptions(model="gemini-3.1-flash-image", seed=42)
        first = await last(service.send(ACTOR, None, "a red bicycle", options=seeded))
        again = await last(service.send(ACTOR, None, "a red bicycle", options=seeded))
        unseeded = await last(service.send(ACTOR, None, "a red bicycle", options=OPTIONS))
    assert len(emulator.requests()) == 2  # the seeded repeat never reached the provider
    cached = again.turns[-1]
    assert cached.shown_image() == first.turns[-1].shown_image()
    assert cached.cost_usd == 0 and attempts_summary(cached) == "Gemini gemini-3.1-flash-image"
    assert cached.attempts[-1].detail == "from cache" and unseeded.turns[-1].cost_usd > 0
