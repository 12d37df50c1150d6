"""The watching page: a tick (``on_tick``) that only compares stamps and gives one of two hidden
boxes a new value, whose change events render: the chat and versions when the conversation changed
(``on_changed``), the chat alone when only its running turn's progress did (``on_progressed``).
What an idle tick costs the database is in test_queries.py."""

from __future__ import annotations

import asyncio

import gradio as gr

from chat.domain import GenerationOptions, Phase, Progress
from chat.sharing.access import Actor
from chat.ui import build_ui
from tests.chat.ui.test_events import CONFIG, MATE, OWNER, submit
from tests.chat.ui.test_queries import a_conversation
from tests.fakes import last, reply_with_image
from tests.pictures import png


class Page:
    """The three hidden boxes of one page, updated by its ticks as Gradio's page would."""

    def __init__(self, handlers, ui, viewer: str = OWNER, token: str = "") -> None:
        self.handlers, self.ui, self.viewer, self.token = handlers, ui, viewer, token
        self.boxes = {ui.seen: "", ui.changed: "", ui.progressed: ""}

    async def tick(self, conversation_id: str) -> set:
        """One tick: which trigger boxes took a new value (their change events would run)."""
        update = await self.handlers.on_tick(self.viewer, conversation_id, self.token, *self.boxes.values())
        if update == gr.skip():
            return set()
        assert set(update) <= set(self.boxes)  # a tick renders nothing itself
        moved = {box for box, value in update.items() if box is not self.ui.seen and value != self.boxes[box]}
        self.boxes.update(update)
        return moved


async def test_an_unchanged_conversation_changes_nothing(page, provider):
    ui, handlers, _ = page
    conversation_id = await a_conversation(handlers, ui, provider)
    watcher = Page(handlers, ui)
    assert await watcher.tick(conversation_id) == {ui.changed}
    for _ in range(3):
        assert await watcher.tick(conversation_id) == set()  # the boxes get back what the page holds
    assert await watcher.tick("") == set()  # nothing open
    shown = await handlers.on_changed(OWNER, conversation_id, "")
    assert shown[ui.chatbot][-1]["content"][0].startswith("A cat.") and ui.versions.choice in shown
    assert shown[ui.timer].active and ui.library.gallery not in shown and ui.box not in shown


async def test_a_view_links_page_sees_a_new_turn_with_its_working_bubble_first(page, provider, library):
    ui, handlers, _ = page
    conversation_id = await a_conversation(handlers, ui, provider)
    token = (await library.share(Actor(OWNER), conversation_id, "view")).token
    watcher = Page(handlers, ui, MATE, token)
    await watcher.tick(conversation_id)

    provider.gate, provider.entered = asyncio.Event(), asyncio.Queue()  # the first turn's entry gone
    provider.shows = [Progress("gemini", Phase.THINKING, "gemini-3.1-flash-image", thoughts="Orange")]
    provider.queue.append(reply_with_image(png((8, 8, 8)), text="Orange now."))
    sending = asyncio.create_task(submit(handlers, "make it orange", conversation_id))
    await asyncio.wait_for(provider.entered.get(), timeout=10)
    for _ in range(100):  # the snapshot reaches the turn's mailbox on the loop
        await asyncio.sleep(0)
    assert await watcher.tick(conversation_id) == {ui.changed}  # a new message: the whole view
    working = await handlers.on_changed(MATE, conversation_id, token)
    bubble = working[ui.chatbot][-1]
    assert bubble["metadata"]["status"] == "pending" and "thinking" in bubble["metadata"]["title"]
    assert working[ui.chatbot][-2] == {
        "role": "assistant",
        "content": "Orange",
        "metadata": {"title": "Thinking"},
    }
    assert ui.painter not in working and ui.versions.choice in working
    # A page that saw the message already but not this snapshot: only the progress moved.
    turns, _ = watcher.boxes[ui.seen].split("|")
    watcher.boxes[ui.seen] = f"{turns}|1"
    assert await watcher.tick(conversation_id) == {ui.progressed}
    assert await handlers.on_progressed(MATE, conversation_id, token) == working[ui.chatbot]  # the chat alone
    provider.gate.set()
    await sending
    assert await watcher.tick(conversation_id) == {ui.changed}
    view = await handlers.on_changed(MATE, conversation_id, token)
    assert view[ui.chatbot][-1]["content"][0].startswith("Orange now.")
    assert ui.conversation_id not in view and ui.share_token not in view  # never switches the page
    assert await handlers.on_progressed(MATE, conversation_id, token) == gr.skip()  # no turn runs


async def test_the_page_that_sends_stops_watching_until_its_answer(page, provider):
    ui, handlers, _ = page
    conversation_id = await a_conversation(handlers, ui, provider)
    provider.queue.append(reply_with_image(png((8, 8, 8))))
    stored, answered = await submit(handlers, "make it orange", conversation_id)
    assert not stored[ui.timer].active and answered[ui.timer].active


async def test_a_refused_watcher_is_told_once_and_stops_ticking(page, provider):
    ui, handlers, _ = page
    conversation_id = await a_conversation(handlers, ui, provider)
    assert await Page(handlers, ui, MATE).tick(conversation_id) == {ui.changed}  # its render says why
    refused = await handlers.on_changed(MATE, conversation_id, "")
    assert "someone else" in refused[ui.status] and not refused[ui.timer].active
    assert ui.chatbot not in refused


async def test_what_a_page_sends_as_its_boxes_is_only_compared(page, provider):
    ui, handlers, _ = page
    conversation_id = await a_conversation(handlers, ui, provider)
    update = await handlers.on_tick(OWNER, conversation_id, "", "x" * 10_000, None, 7)
    assert update[ui.progressed] == "" and update[ui.changed] == update[ui.seen]  # garbage: a change


async def test_gradio_takes_what_the_watching_events_return(service, library, provider):
    """Through Gradio's own postprocessing, as the app runs them: every part a tick or a render
    returns is one of its outputs, and a render with nothing to show skips its output."""
    demo = build_ui(service, library, CONFIG)
    events = {getattr(fn.fn, "__name__", ""): fn for fn in demo.fns.values()}
    tick, changed, progressed = events["on_tick"], events["on_changed"], events["on_progressed"]
    assert (tick.queue, tick.trigger_mode, tick.api_visibility) == (False, "once", "private")
    assert len(tick.outputs) == 3  # the three boxes: a tick renders nothing
    assert not any(isinstance(block, gr.State) for block in demo.blocks.values())  # no heartbeat per page
    provider.queue.append(reply_with_image(png((9, 9, 9))))
    conversation = await last(service.send(Actor(OWNER), None, "a cat", options=GenerationOptions(model="m")))
    first = await tick.fn(OWNER, conversation.id, "", "", "", "")
    values = await demo.postprocess_data(tick, first, None)
    assert values[0] == values[1] != "" and values[2] == ""
    assert (
        await demo.postprocess_data(tick, await tick.fn(OWNER, conversation.id, "", *values), None) == values
    )
    view = await changed.fn(OWNER, conversation.id, "")
    assert len(await demo.postprocess_data(changed, view, None)) == len(changed.outputs)
    # It names what it sets and no more (each output named but left out costs a config rebuild).
    assert set(view) == set(changed.outputs) and len(changed.outputs) < len(events["on_open"].outputs)
    skipped = await demo.postprocess_data(progressed, await progressed.fn(OWNER, conversation.id, ""), None)
    assert skipped == [gr.skip()]
