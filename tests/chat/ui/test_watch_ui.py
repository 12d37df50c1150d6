"""The watching page's tick (``on_tick``): nothing rendered while nothing changed, the chat and its
versions when it did, the working bubble while a turn runs; and what an idle tick costs."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from chat.domain import Phase, Progress
from chat.sharing.access import Actor
from tests.chat.ui.test_events import MATE, OWNER, submit
from tests.chat.ui.test_queries import a_conversation
from tests.fakes import reply_with_image
from tests.pictures import png


async def test_an_unchanged_conversation_skips_every_output(page, provider):
    ui, handlers, _ = page
    conversation_id = await a_conversation(handlers, ui, provider)
    first = await handlers.on_tick(OWNER, conversation_id, "", None)
    assert first[ui.chatbot][-1]["content"][0].startswith("A cat.") and ui.versions.choice in first
    assert first[ui.timer].active and ui.library.gallery not in first and ui.box not in first
    assert await handlers.on_tick(OWNER, conversation_id, "", first[ui.seen]) == {}  # gr.skip() for all
    nothing_open = await handlers.on_tick(OWNER, "", "", None)
    assert list(nothing_open) == [ui.timer] and not nothing_open[ui.timer].active


async def test_a_view_links_page_sees_a_new_turn_with_its_working_bubble_first(page, provider, library):
    ui, handlers, _ = page
    conversation_id = await a_conversation(handlers, ui, provider)
    token = (await library.share(Actor(OWNER), conversation_id, "view")).token
    seen = (await handlers.on_tick(MATE, conversation_id, token, None))[ui.seen]

    provider.gate = asyncio.Event()
    provider.shows = [Progress("gemini", Phase.THINKING, "gemini-3.1-flash-image", thoughts="Orange")]
    provider.queue.append(reply_with_image(png((8, 8, 8)), text="Orange now."))
    sending = asyncio.create_task(submit(handlers, "make it orange", conversation_id))
    await asyncio.wait_for(provider.entered.get(), timeout=10)
    for _ in range(100):  # the snapshot reaches the turn's mailbox on the loop
        working = await handlers.on_tick(MATE, conversation_id, token, seen)
        if working and working[ui.seen].shown >= 2:
            break
        await asyncio.sleep(0)
    bubble = working[ui.chatbot][-1]
    assert bubble["metadata"]["status"] == "pending" and "thinking" in bubble["metadata"]["title"]
    assert working[ui.chatbot][-2] == {
        "role": "assistant",
        "content": "Orange",
        "metadata": {"title": "Thinking"},
    }
    assert ui.painter in working and ui.versions.choice in working  # a new message: the whole view
    # A page that saw the message already but not this snapshot: the progress changes the chat alone.
    progressed = await handlers.on_tick(MATE, conversation_id, token, replace(working[ui.seen], shown=1))
    assert set(progressed) == {ui.chatbot, ui.seen} and progressed[ui.chatbot] == working[ui.chatbot]
    provider.gate.set()
    await sending
    answered = await handlers.on_tick(MATE, conversation_id, token, working[ui.seen])
    assert answered[ui.chatbot][-1]["content"][0].startswith("Orange now.")
    assert answered[ui.share_token] == token and not answered[ui.seen].answering


async def test_the_page_that_sends_stops_watching_until_its_answer(page, provider):
    ui, handlers, _ = page
    conversation_id = await a_conversation(handlers, ui, provider)
    provider.queue.append(reply_with_image(png((8, 8, 8))))
    stored, answered = await submit(handlers, "make it orange", conversation_id)
    assert not stored[ui.timer].active and answered[ui.timer].active


async def test_a_refused_watcher_is_told_once_and_stops_ticking(page, provider):
    ui, handlers, _ = page
    conversation_id = await a_conversation(handlers, ui, provider)
    refused = await handlers.on_tick(MATE, conversation_id, "", None)
    assert "someone else" in refused[ui.status] and not refused[ui.timer].active
    assert ui.chatbot not in refused
