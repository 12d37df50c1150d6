"""A turn runs in a task of its own: its progress reaches the page, a page that goes away leaves it
running, and Stop (or cancelling the follower) ends the call and stores a stopped answer."""

from __future__ import annotations

import asyncio

import pytest

from chat.conversation.runs import Mailbox, Update
from chat.domain import GenerationOptions, ImageData, Phase, Progress, Role
from chat.errors import AccessError
from chat.sharing.access import Actor
from tests.fakes import FakeProvider, last, make_library, make_service, migrated_engine, reply_with_image
from tests.pictures import png

pytestmark = pytest.mark.both_databases

ACTOR = Actor("owner-of-the-running-turns")
OPTIONS = GenerationOptions(model="gemini-3.1-flash-image")


async def test_a_passing_update_gives_way_to_the_next_but_the_others_are_all_delivered() -> None:
    box: Mailbox[str] = Mailbox()
    for update in [
        Update("stored"),
        Update("p1", True),
        Update("p2", True),
        Update("answer"),
        Update("p3", True),
    ]:
        box.put(update)
    box.close()
    taken = []
    while (update := await box.take()) is not None:
        taken.append(update.value)
    assert taken == ["stored", "p2", "answer", "p3"]


async def test_the_calls_progress_reaches_the_follower_between_the_message_and_the_answer(tmp_path) -> None:
    provider = FakeProvider()
    draft = ImageData(png((9, 9, 9)), "image/png", thought=True)
    provider.shows = [
        Progress("gemini", Phase.THINKING, thoughts="Composing"),
        Progress("gemini", Phase.DRAFT, thoughts="Composing", drafts=(draft,)),
    ]
    provider.queue = [reply_with_image(png((1, 2, 3)))]
    service = make_service(tmp_path / "data", provider)

    steps = [step async for step in service.send(ACTOR, None, "a lighthouse", options=OPTIONS)]

    assert steps[0].progress == () and steps[0].answering
    shown = [step.progress[0] for step in steps[1:-1]]
    assert shown and shown[-1].phase is Phase.DRAFT and shown[-1].drafts == (draft,)
    assert all(step.since is not None for step in steps[1:-1])
    assert steps[-1].progress == () and not steps[-1].answering
    assert steps[-1].conversation.turns[-1].shown_image() is not None


async def test_stop_ends_the_call_stores_a_stopped_answer_and_retry_answers_again(tmp_path) -> None:
    provider = FakeProvider()
    provider.gate = asyncio.Event()
    service = make_service(tmp_path / "data", provider)
    steps = service.send(ACTOR, None, "a lighthouse", options=OPTIONS)
    conversation_id = (await anext(steps)).conversation.id
    await provider.entered.get()

    stopped = await service.stop(ACTOR, conversation_id)

    turn = stopped.conversation.turns[-1]
    assert turn.role is Role.ASSISTANT and turn.error is not None and turn.error.kind == "stopped"
    assert "press Retry" in turn.error.message
    assert (await last(steps)).turns[-1].error.kind == "stopped"  # the page that sent it sees the same
    assert service.running == 0

    provider.gate.set()
    provider.queue = [reply_with_image(png((1, 2, 3)))]
    again = await last(service.retry(ACTOR, conversation_id, options=OPTIONS))
    assert again.turns[-1].shown_image() is not None


async def test_cancelling_the_follower_stops_the_turn_and_closing_it_does_not(tmp_path) -> None:
    provider = FakeProvider()
    provider.gate = asyncio.Event()
    service = make_service(tmp_path / "data", provider)

    async def follow() -> str:
        steps = service.send(ACTOR, None, "a lighthouse", options=OPTIONS)
        first = await anext(steps)
        follower.set_result(first.conversation.id)
        async for _ in steps:
            pass
        return first.conversation.id

    follower: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(follow())  # as gradio_client's Job.cancel() reaches /send
    conversation_id = await follower
    await provider.entered.get()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert service.running == 0
    assert (await service.load(ACTOR, conversation_id)).turns[-1].error.kind == "stopped"

    provider.queue = [reply_with_image(png((1, 2, 3)))]
    steps = service.retry(ACTOR, conversation_id, options=OPTIONS)
    await anext(steps)
    await steps.aclose()  # the page went away: the answer is still stored
    provider.gate.set()
    await service.finish_running()
    assert (await service.load(ACTOR, conversation_id)).turns[-1].shown_image() is not None


async def test_only_someone_who_may_write_can_stop_a_turn(tmp_path) -> None:
    provider = FakeProvider()
    provider.gate = asyncio.Event()
    engine = migrated_engine(tmp_path / "data")
    service = make_service(tmp_path / "data", provider, engine=engine)
    library = make_library(tmp_path / "data", engine, service)
    steps = service.send(ACTOR, None, "a lighthouse", options=OPTIONS)
    conversation_id = (await anext(steps)).conversation.id
    link = await library.share(ACTOR, conversation_id, "view")

    for stranger in (Actor("someone-else-entirely-here"), Actor("a-viewer-with-the-link", link.token)):
        with pytest.raises(AccessError):
            await service.stop(stranger, conversation_id)
    assert service.running == 1

    provider.queue = [reply_with_image(png((1, 2, 3)))]
    provider.gate.set()
    assert (await last(steps)).turns[-1].shown_image() is not None
