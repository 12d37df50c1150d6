"""ChatService with real storage on tmp_path and a recording fake provider."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image
from sqlmodel import select

from chat.conversation.service import Attachment, ChatService
from chat.domain import (
    GenerationOptions,
    ImageData,
    ImagePart,
    ProviderReply,
    Role,
    TextPart,
    TurnStatus,
)
from chat.errors import AccessError, InputError, NoImageError, UnavailableError
from chat.providers.gemini.wire import build_contents
from chat.sharing.access import Access, Actor, Grant
from storage import make_engine, session_scope
from storage import repository as repo_module
from storage.models import ConversationRow
from tests.databases import database_url
from tests.fakes import FakeProvider, collect, make_service, reply_with_image
from tests.pictures import painted_png, png

pytestmark = pytest.mark.both_databases

OPTIONS = GenerationOptions(model="gemini-3.1-flash-image")
ACTOR = Actor("owner-of-the-test-conversations")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def service(data_dir: Path, provider: FakeProvider) -> ChatService:
    return make_service(data_dir, provider)


def stored_conversations(data_dir: Path) -> list:
    """Every stored conversation, whoever owns it."""
    engine = make_engine(database_url(data_dir))
    try:
        with session_scope(engine) as session:
            return list(session.exec(select(ConversationRow)).all())
    finally:
        engine.dispose()


async def test_send_stores_user_turn_before_calling_the_provider(service, provider):
    photo = png((10, 20, 30))
    provider.queue.append(reply_with_image(png((200, 0, 0))))
    stored, answered = await collect(
        service.send(ACTOR, None, "make the sky stormy", [Attachment("photo.png", photo)], options=OPTIONS)
    )
    assert stored.awaiting_answer() and len(stored.turns) == 1
    user = stored.turns[0]
    assert user.images()[0].sha256 == hashlib.sha256(photo).hexdigest()
    assert user.text() == "make the sky stormy"
    assert stored.title == "make the sky stormy"
    assert [t.role for t in answered.turns] == [Role.USER, Role.ASSISTANT]
    assert answered.turns[1].provider == "gemini" and answered.turns[1].usage.total_tokens == 1200


async def test_second_turn_replays_first_answer_with_its_signature(service, provider):
    provider.queue += [
        reply_with_image(png((1, 1, 1)), signature="Zmlyc3Q="),
        reply_with_image(png((2, 2, 2))),
    ]
    *_, first = await collect(service.send(ACTOR, None, "a cat", options=OPTIONS))
    await collect(service.send(ACTOR, first.id, "make it orange", options=OPTIONS))
    second_call = provider.calls[1]
    assert [t.role for t in second_call] == [Role.USER, Role.ASSISTANT, Role.USER]
    answer_image = second_call[1].images()[0]
    assert answer_image.provider_metadata["gemini"]["thoughtSignature"] == "Zmlyc3Q="


async def test_history_survives_a_new_engine_and_service(service, provider, data_dir):
    provider.queue.append(reply_with_image(png((9, 9, 9))))
    *_, done = await collect(service.send(ACTOR, None, "hello", options=OPTIONS))
    reopened = await make_service(data_dir, FakeProvider()).load(ACTOR, done.id)
    assert reopened == done


async def test_a_turn_does_not_reload_the_conversation_it_just_wrote(
    service, provider, data_dir, monkeypatch
):
    """Reloading every turn and part costs more with every turn; what was written is what a reload gives."""
    provider.queue += [reply_with_image(png((i, i, i))) for i in range(3)]
    *_, first = await collect(service.send(ACTOR, None, "a cat", options=OPTIONS))
    loads: list[str] = []
    original = repo_module.get_conversation

    def counted(**kwargs):
        loads.append(kwargs["conversation_id"])
        return original(**kwargs)

    monkeypatch.setattr(repo_module, "get_conversation", counted)
    await collect(service.send(ACTOR, first.id, "make it orange", options=OPTIONS))
    *_, last = await collect(service.send(ACTOR, first.id, "now blue", options=OPTIONS))
    assert loads == []
    monkeypatch.undo()
    assert len(last.turns) == 6
    assert await make_service(data_dir, FakeProvider()).load(ACTOR, first.id) == last


async def test_a_turn_written_by_another_process_is_replayed_too(service, provider, data_dir):
    """Two app processes on one database: the stale copy in memory is noticed and reloaded."""
    other = make_service(data_dir, provider)
    provider.queue += [reply_with_image(png((i, i, i))) for i in range(3)]
    *_, first = await collect(service.send(ACTOR, None, "a cat", options=OPTIONS))
    await collect(other.send(ACTOR, first.id, "make it orange", options=OPTIONS))
    *_, last = await collect(service.send(ACTOR, first.id, "now blue", options=OPTIONS))
    assert [t.text() for t in last.turns if t.role is Role.USER] == ["a cat", "make it orange", "now blue"]
    assert await make_service(data_dir, FakeProvider()).load(ACTOR, first.id) == last


@pytest.mark.parametrize(
    ("text", "attachments"),
    [
        ("", []),
        ("   ", []),
        ("fix this", [Attachment("notes.png", b"this is not an image")]),
        ("fix this", [Attachment("empty.png", b"")]),
        ("x" * 9000, []),
    ],
)
async def test_bad_input_writes_nothing(service, provider, data_dir, text, attachments):
    with pytest.raises(InputError):
        await collect(service.send(ACTOR, None, text, attachments, options=OPTIONS))
    assert provider.calls == []
    assert list((data_dir / "images").rglob("*.*")) == []
    assert stored_conversations(data_dir) == []


async def test_provider_failure_keeps_the_user_turn_and_retry_answers_it(service, provider):
    provider.queue += [UnavailableError("gemini", "503 UNAVAILABLE"), reply_with_image(png((5, 5, 5)))]
    *_, failed = await collect(service.send(ACTOR, None, "warmer light", options=OPTIONS))
    assert failed.turns[-1].status is TurnStatus.ERROR
    assert failed.turns[-1].error.kind == "unavailable"
    assert "Retry" in failed.turns[-1].error.message
    assert failed.awaiting_answer()
    *_, retried = await collect(service.retry(ACTOR, failed.id, options=OPTIONS))
    assert [t.status for t in retried.turns] == [TurnStatus.OK, TurnStatus.ERROR, TurnStatus.OK]
    assert provider.calls[1][0].text() == "warmer light"
    assert not retried.awaiting_answer()


async def test_retry_after_an_answer_regenerates_without_repeating_the_message(service, provider):
    provider.queue += [reply_with_image(png((5, 5, 5))), reply_with_image(png((6, 6, 6)), signature="djI=")]
    provider.queue.append(reply_with_image(png((7, 7, 7))))
    *_, done = await collect(service.send(ACTOR, None, "a fox", options=OPTIONS))
    *_, variant = await collect(service.retry(ACTOR, done.id, options=OPTIONS))
    assert [t.role for t in variant.turns] == [Role.USER, Role.ASSISTANT, Role.ASSISTANT]
    assert [len(call) for call in provider.calls] == [1, 1]  # the variant was asked for the same message
    await collect(service.send(ACTOR, done.id, "make it smaller", options=OPTIONS))
    contents = build_contents(
        provider.calls[2], lambda p: service.image_path(p).read_bytes(), model="gemini-3.1-flash-image"
    )
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"][1]["thoughtSignature"] == "djI="  # the newest variant is replayed


async def test_strangers_cannot_read_or_write_a_conversation(service, provider):
    provider.queue.append(reply_with_image(png((5, 5, 5))))
    *_, done = await collect(service.send(ACTOR, None, "mine", options=OPTIONS))
    stranger = Actor("someone-else")
    with pytest.raises(AccessError, match="belongs to someone else"):
        await service.load(stranger, done.id)
    with pytest.raises(AccessError):
        await collect(service.send(stranger, done.id, "hijack", options=OPTIONS))
    with pytest.raises(AccessError):
        await collect(service.retry(stranger, done.id, options=OPTIONS))
    assert len((await service.load(ACTOR, done.id)).turns) == 2


async def test_text_only_answer_is_kept_with_a_notice(service, provider):
    reply = ProviderReply(provider="gemini", model="m", parts=(TextPart("Which car do you mean?"),))
    provider.queue.append(NoImageError("gemini", "text only", reply=reply))
    *_, done = await collect(service.send(ACTOR, None, "remove the car", options=OPTIONS))
    answer = done.turns[-1]
    assert answer.status is TurnStatus.OK and answer.text() == "Which car do you mean?"
    assert answer.error is None and "image" in answer.notice


async def test_corrupt_image_from_provider_becomes_an_error_turn(service, provider, data_dir):
    provider.queue.append(reply_with_image(b"\x89PNG\r\n\x1a\n truncated"))
    *_, done = await collect(service.send(ACTOR, None, "x", options=OPTIONS))
    assert done.turns[-1].status is TurnStatus.ERROR
    assert done.turns[-1].error.kind == "unavailable"


async def test_unexpected_bug_becomes_a_clear_error_turn(service, provider, caplog):
    provider.queue.append(RuntimeError("boom"))
    *_, done = await collect(service.send(ACTOR, None, "x", options=OPTIONS))
    assert done.turns[-1].error.kind == "internal"
    assert "boom" not in done.turns[-1].error.message
    assert "Retry" in done.turns[-1].error.message


async def test_turns_of_one_conversation_are_serialized(service, provider):
    provider.queue.append(reply_with_image(png((1, 2, 3))))
    *_, start = await collect(service.send(ACTOR, None, "first", options=OPTIONS))
    provider.gate = asyncio.Event()
    provider.queue += [reply_with_image(png((4, 5, 6))), reply_with_image(png((7, 8, 9)))]
    a = asyncio.create_task(collect(service.send(ACTOR, start.id, "from tab A", options=OPTIONS)))
    b = asyncio.create_task(collect(service.send(ACTOR, start.id, "from tab B", options=OPTIONS)))
    await asyncio.wait_for(provider.entered.get(), timeout=10)
    provider.gate.set()  # the first call was held at the provider while the other send was pending
    await asyncio.gather(a, b)
    final = await service.load(ACTOR, start.id)
    assert [t.role for t in final.turns] == [Role.USER, Role.ASSISTANT] * 3
    # Each call saw every earlier turn and nothing from the other tab's pending message.
    assert [len(call) for call in provider.calls] == [1, 3, 5]
    assert [t.role for t in provider.calls[2]] == [Role.USER, Role.ASSISTANT] * 2 + [Role.USER]


async def test_painted_region_becomes_a_marked_copy_and_a_mask(service, provider):
    provider.queue += [reply_with_image(png((200, 200, 200), (40, 30))), reply_with_image(png((9, 9, 9)))]
    *_, first = await collect(service.send(ACTOR, None, "a grey wall", options=OPTIONS))
    painted = painted_png((40, 30), (0, 0, 10, 10))
    stored, _ = await collect(service.send(ACTOR, first.id, "paint it red", options=OPTIONS, painted=painted))
    user = stored.turns[-1]
    roles = [p.role.value for p in user.images()]
    assert roles == ["marked", "mask"]
    mask = Image.open(io.BytesIO(service_blob(service, user.images()[1])))
    assert mask.size == (40, 30) and mask.mode == "RGBA"
    assert mask.getpixel((5, 5))[3] == 0 and mask.getpixel((30, 20))[3] == 255
    marked = Image.open(io.BytesIO(service_blob(service, user.images()[0]))).convert("RGB")
    assert marked.getpixel((30, 20)) == (200, 200, 200) and marked.getpixel((5, 5)) != (200, 200, 200)


async def test_painting_without_an_image_is_refused(service, provider):
    with pytest.raises(InputError, match="no image to paint on"):
        await collect(service.send(ACTOR, None, "x", options=OPTIONS, painted=png((255, 255, 255))))


async def test_fallback_answer_records_every_attempt(data_dir):
    gemini, openai = FakeProvider("gemini"), FakeProvider("openai")
    gemini.queue.append(UnavailableError("gemini", "503 UNAVAILABLE: overloaded"))
    fallback = ProviderReply(
        provider="openai", model="gpt-image-2", parts=(ImageData(png((3, 3, 3)), "image/png"),)
    )
    openai.queue.append(fallback)
    service = make_service(data_dir, gemini, openai)
    *_, done = await collect(service.send(ACTOR, None, "warmer", options=OPTIONS))
    answer = (await service.load(ACTOR, done.id)).turns[-1]
    assert answer.provider == "openai" and answer.model == "gpt-image-2"
    assert [(a.provider, a.outcome) for a in answer.attempts] == [("gemini", "unavailable"), ("openai", "ok")]
    assert answer.attempts[0].detail == "503 UNAVAILABLE: overloaded"


def service_blob(service: ChatService, part: ImagePart) -> bytes:
    return service.image_path(part).read_bytes()


async def test_every_step_carries_the_grant_checked_when_the_turn_began(service, provider):
    provider.queue += [reply_with_image(png((1, 1, 1))), reply_with_image(png((2, 2, 2)))]
    new = [step async for step in service.send(ACTOR, None, "a cat", options=OPTIONS)]
    conversation_id = new[-1].conversation.id
    assert [step.grant for step in new] == [Grant(conversation_id, Access.OWNER)] * 2
    retried = [step async for step in service.retry(ACTOR, conversation_id, options=OPTIONS)]
    assert [step.grant.access for step in retried] == [Access.OWNER] * 2
    assert len(retried[-1].conversation.turns) == 3


async def test_an_opened_conversation_is_shown_without_signatures_and_the_next_turn_replays_them(
    tmp_path: Path,
) -> None:
    provider = FakeProvider()
    provider.queue = [
        reply_with_image(png((1, 1, 1)), signature="c2lnLW9uZQ=="),
        reply_with_image(png((2, 2, 2))),
    ]
    service = make_service(tmp_path / "data", provider)
    first = (await collect(service.send(ACTOR, None, "a lighthouse", options=OPTIONS)))[-1]

    opened = (await service.open(ACTOR, first.id)).conversation
    assert not opened.replayable
    assert all(not part.provider_metadata for turn in opened.turns for part in turn.parts)
    with pytest.raises(ValueError, match="loaded to be shown"):
        service.writer.append(opened, [])

    other_replica = make_service(tmp_path / "data", provider)  # nothing cached: it loads what it replays
    await collect(other_replica.send(ACTOR, first.id, "now at night", options=OPTIONS))
    replayed = provider.calls[-1][1]
    assert {p.provider_metadata["gemini"]["thoughtSignature"] for p in replayed.parts} == {"c2lnLW9uZQ=="}
