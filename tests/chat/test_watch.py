"""Watching a conversation (a share link's page, the owner's other tab): its stamp, read with access
in one SELECT, changes when the page would, and ``watch`` gives what to show then."""

from __future__ import annotations

import asyncio

import pytest

from chat.conversation.service import Stamp
from chat.domain import GenerationOptions, Phase, Progress, Role
from chat.errors import AccessError
from chat.sharing.access import Access, Actor
from tests.fakes import FakeProvider, last, make_library, make_service, reply_with_image
from tests.pictures import png

pytestmark = pytest.mark.both_databases

ACTOR = Actor("owner-of-the-watched-one")
ONE = GenerationOptions(model="gemini-3.1-flash-image")
TWO = GenerationOptions(model="gemini-3.1-flash-image", variants=2)


async def test_the_stamp_changes_with_a_message_an_answer_and_a_pick_and_only_then(service, provider):
    provider.queue += [reply_with_image(png((1, 1, 1)), text="a"), reply_with_image(png((2, 2, 2)), text="b")]
    conversation = await last(service.send(ACTOR, None, "a lighthouse", options=TWO))
    first = await service.stamp(ACTOR, conversation.id)
    assert first == Stamp(conversation.id, 3, 0, False)
    assert await service.stamp(ACTOR, conversation.id) == first  # nothing happened
    shown = await service.watch(ACTOR, conversation.id)
    assert [t.text() for t in shown.conversation.turns] == ["a lighthouse", "a", "b"]
    assert shown.grant.access is Access.OWNER and not shown.answering

    await service.pick(ACTOR, conversation.id, 2)
    picked = await service.stamp(ACTOR, conversation.id)
    assert (picked.turn_count, picked.revision) == (3, 1)
    assert [t.picked for t in (await service.watch(ACTOR, conversation.id)).conversation.turns[1:]] == [
        False,
        True,
    ]

    provider.gate = asyncio.Event()
    provider.queue.append(reply_with_image(png((3, 3, 3)), text="c"))
    steps = service.send(ACTOR, conversation.id, "darker", options=ONE)
    await anext(steps)  # the message is stored, the answer held at the provider
    asked = await service.stamp(ACTOR, conversation.id)
    assert (asked.turn_count, asked.answering) == (4, True)
    shown = await service.watch(ACTOR, conversation.id)
    assert shown.answering and shown.conversation.turns[-1].role is Role.USER
    provider.gate.set()
    async for _ in steps:
        pass
    answered = await service.stamp(ACTOR, conversation.id)
    assert (answered.turn_count, answered.answering) == (5, False)
    assert (await service.watch(ACTOR, conversation.id)).conversation.turns[-1].text() == "c"
    assert await service.stamp(ACTOR, conversation.id) == answered


async def test_a_turn_running_here_shows_its_progress_from_memory(service, provider):
    provider.queue.append(reply_with_image(png((1, 1, 1))))
    conversation = await last(service.send(ACTOR, None, "a lighthouse", options=ONE))
    provider.gate = asyncio.Event()
    provider.shows = [Progress("gemini", Phase.THINKING, "gemini-3.1-flash-image", thoughts="Dusk")]
    provider.queue.append(reply_with_image(png((2, 2, 2))))
    steps = service.send(ACTOR, conversation.id, "darker", options=ONE)
    await anext(steps)
    await asyncio.wait_for(provider.entered.get(), timeout=10)
    await anext(steps)  # the thinking snapshot reached the turn's mailbox
    thinking = await service.stamp(ACTOR, conversation.id)
    assert thinking.shown == 2 and thinking.answering  # the message, then the snapshot
    shown = await service.watch(ACTOR, conversation.id)
    assert shown.progress[0].thoughts == "Dusk" and shown.since is not None
    assert shown.grant.access is Access.OWNER  # the watcher's grant, checked for it
    with pytest.raises(AccessError):
        await service.watch(Actor("a-teammate-without-a-link"), conversation.id)
    provider.gate.set()
    async for _ in steps:
        pass


async def test_a_turn_on_another_replica_shows_the_message_and_the_time_since(tmp_path, engine, provider):
    here = make_service(tmp_path / "data", provider, engine=engine)
    there_provider = FakeProvider()
    there = make_service(tmp_path / "data", there_provider, engine=engine)
    provider.queue.append(reply_with_image(png((1, 1, 1))))
    conversation = await last(here.send(ACTOR, None, "a lighthouse", options=ONE))
    there_provider.gate = asyncio.Event()
    there_provider.queue.append(reply_with_image(png((2, 2, 2))))
    steps = there.send(ACTOR, conversation.id, "darker", options=ONE)
    await anext(steps)
    stamp = await here.stamp(ACTOR, conversation.id)
    assert stamp.answering and stamp.shown == 0
    shown = await here.watch(ACTOR, conversation.id)
    assert shown.answering and shown.progress == () and shown.since is not None
    there_provider.gate.set()
    async for _ in steps:
        pass


async def test_a_view_link_may_watch_and_a_stranger_is_refused_as_by_open(
    tmp_path, engine, service, provider
):
    provider.queue.append(reply_with_image(png((1, 1, 1))))
    conversation = await last(service.send(ACTOR, None, "a lighthouse", options=ONE))
    library = make_library(tmp_path / "data", engine, service)
    view = await library.share(ACTOR, conversation.id, "view")
    watcher = Actor(None, view.token)
    assert await service.stamp(watcher, conversation.id) == await service.stamp(ACTOR, conversation.id)
    assert (await service.watch(watcher, conversation.id)).grant.access is Access.VIEW

    for stranger in (Actor("someone-else-entirely-2"), Actor(None, "not-a-token-of-anything-at-all")):
        with pytest.raises(AccessError) as opened:
            await service.open(stranger, conversation.id)
        with pytest.raises(AccessError) as stamped:
            await service.stamp(stranger, conversation.id)
        assert str(stamped.value) == str(opened.value)
    await library.revoke(ACTOR, conversation.id, view.token)
    with pytest.raises(AccessError, match="revoked"):
        await service.stamp(watcher, conversation.id)
    with pytest.raises(AccessError, match="does not exist"):
        await service.stamp(ACTOR, "no-such-conversation")
