"""A running call's progress on the page and for API callers, and Stop: rendered from Progress
snapshots (pure), then end to end through the real handlers with a FakeProvider reporting them."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from chat.domain import ImageData, Phase, Progress
from chat.sharing.access import Actor
from chat.ui.api import ApiHandlers
from chat.ui.files import FileMaker
from chat.ui.progress import (
    elapsed_html,
    phase_line,
    progress_json,
    progress_messages,
    turn_progress_json,
    turn_progress_messages,
)
from chat.ui.render import to_transcript
from tests.chat.ui.test_events import CONFIG, DEFAULT_OPTIONS, OWNER, retry
from tests.chat.ui.test_queries import counts  # noqa: F401  (a fixture)
from tests.fakes import FakeRequest, reply_with_image
from tests.pictures import png

MODEL = "gemini-3-pro-image"
DRAFT = ImageData(png((200, 10, 10), (48, 32)), "image/png", thought=True)
SECOND_DRAFT = ImageData(png((10, 200, 10), (48, 32)), "image/png", thought=True)


# --- words ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("progress", "line"),
    [
        (None, "Editing with gemini-3.1-flash-image\u2026"),
        (Progress("gemini", Phase.WAITING, MODEL), "Asked Gemini, waiting for its answer\u2026"),
        (Progress("gemini", Phase.THINKING, MODEL), "Gemini is thinking\u2026"),
        (Progress("gemini", Phase.WRITING, MODEL), "Gemini is writing\u2026"),
        (Progress("gemini", Phase.DRAFT, MODEL, drafts=(DRAFT,)), "Gemini: draft 1"),
        (
            Progress("openai", Phase.DRAFT, "gpt-image-2", drafts=(DRAFT, SECOND_DRAFT), drafts_expected=3),
            "OpenAI: draft 2 of 3",
        ),
        (Progress("gemini", Phase.FINAL, MODEL), "Gemini: final image, finishing\u2026"),
        (
            Progress(
                "gemini",
                Phase.RETRYING,
                MODEL,
                note="Gemini failed: 503 UNAVAILABLE. Trying again in 2 s.",
            ),
            "Gemini failed: 503 UNAVAILABLE. Trying again in 2 s.",
        ),
        (
            Progress("openai", Phase.FALLING_BACK, "gpt-image-2", note="Gemini failed: 503 UNAVAILABLE."),
            "Gemini failed: 503 UNAVAILABLE. Asking OpenAI\u2026",
        ),
    ],
)
def test_each_phase_reads_as_words(progress, line):
    assert phase_line(progress, "gemini-3.1-flash-image") == line


def test_the_bubble_has_the_phase_model_and_elapsed_time_the_thoughts_the_text_and_the_labelled_draft():
    progress = Progress(
        "gemini",
        Phase.DRAFT,
        MODEL,
        text="Here is a stormier sky.",
        thoughts="**Composing** the clouds",
        drafts=(DRAFT,),
        drafts_expected=2,
    )
    thinking, bubble, draft = progress_messages(
        progress, working_model="x", elapsed_s=12.7, draft_path="/staged/draft.png"
    )
    assert thinking == {
        "role": "assistant",
        "content": "**Composing** the clouds",
        "metadata": {"title": "Thinking"},  # collapsed, as a stored turn's thoughts
    }
    assert bubble == {
        "role": "assistant",
        "content": "Here is a stormier sky.",
        "metadata": {
            "title": f"Gemini: draft 1 of 2 \u00b7 {MODEL} \u00b7 {elapsed_html(12.7)}",
            "status": "pending",
        },
    }
    label = "Draft 1 of 2 \u2014 the final image replaces it"
    assert draft == {
        "role": "assistant",
        "content": [{"path": "/staged/draft.png", "alt_text": label}, f"*{label}*"],
    }
    assert elapsed_html(12.7) == '<span class="retouch-elapsed retouch-elapsed-12">12 s</span>'


def test_before_anything_arrives_the_bubble_says_it_is_working_and_escapes_what_it_quotes():
    [bubble] = progress_messages(None, working_model="gemini-3.1-flash-image", elapsed_s=0)
    assert bubble["content"] == "This usually takes 10\u201360 seconds. Your message is saved."
    assert bubble["metadata"]["title"].startswith("Editing with gemini-3.1-flash-image\u2026 \u00b7 ")
    note = Progress("openai", Phase.FALLING_BACK, "gpt-image-2", note="Gemini failed: <b>oops</b>")
    [bubble] = progress_messages(note, working_model="x", elapsed_s=0)
    assert "<b>" not in bubble["metadata"]["title"] and "&lt;b&gt;oops" in bubble["metadata"]["title"]


def test_api_progress_has_counts_not_bytes():
    progress = Progress(
        "gemini", Phase.DRAFT, MODEL, text="t", thoughts="th", drafts=(DRAFT,), drafts_expected=2
    )
    shown = progress_json(progress, working_model="x", elapsed_s=3.04)
    assert shown == {
        "phase": "draft",
        "provider": "gemini",
        "model": MODEL,
        "elapsed_s": 3.0,
        "text": "t",
        "thoughts": "th",
        "drafts": 1,
        "drafts_expected": 2,
        "note": "",
        "line": "Gemini: draft 1 of 2",
    }
    json.dumps(shown)
    assert progress_json(None, working_model="x", elapsed_s=0)["phase"] == "waiting"


def test_a_draft_is_staged_once_under_its_sha256(tmp_path: Path):
    files = FileMaker(lambda part: tmp_path / part.sha256, tmp_path / "files")
    path = Path(files.draft(DRAFT))
    assert path.name == f"draft-{hashlib.sha256(DRAFT.data).hexdigest()}.png"
    assert path.read_bytes() == DRAFT.data and path.parent == tmp_path / "files" / "images"
    assert files.draft(DRAFT) == str(path)


# --- the page ----------------------------------------------------------------------------------


def submitting(handlers, text: str, conversation_id: str = ""):
    return handlers.on_submit(
        FakeRequest(),
        None,
        message={"text": text, "files": []},
        conversation_id=conversation_id,
        share_token="",
        owner=OWNER,
        painter=None,
        gemini_key="",
        openai_key="",
        **DEFAULT_OPTIONS,
    )


def texts(messages) -> str:
    return json.dumps(messages, ensure_ascii=False)


async def test_progress_reaches_the_chat_only_without_a_database_read_and_the_answer_replaces_it(
    page,
    provider,
    counts,  # noqa: F811  (the fixture imported above)
):
    ui, handlers, _ = page
    provider.queue.append(reply_with_image(png((9, 9, 9))))
    *_, done = [update async for update in submitting(handlers, "a lighthouse")]
    conversation_id = done[ui.conversation_id]
    provider.shows = [
        Progress("gemini", Phase.THINKING, MODEL, thoughts="Composing"),
        Progress("gemini", Phase.DRAFT, MODEL, thoughts="Composing", drafts=(DRAFT,), drafts_expected=2),
    ]
    provider.gate = asyncio.Event()
    provider.queue.append(reply_with_image(png((1, 2, 3)), text="Stormy now."))
    steps = submitting(handlers, "make it stormy", conversation_id)

    stored = await anext(steps)
    assert stored[ui.stop].visible is True
    assert "Editing with gemini-3.1-flash-image" in stored[ui.chatbot][-1]["metadata"]["title"]
    counts.take()
    shown = await asyncio.wait_for(anext(steps), timeout=10)

    assert set(shown) == {ui.chatbot}  # no status, no gallery, no versions
    assert counts.take().transactions == 0
    assert shown[ui.chatbot][:-3] == stored[ui.chatbot][:-1]  # the stored turns, as first rendered
    thinking, bubble, draft = shown[ui.chatbot][-3:]
    assert thinking["content"] == "Composing" and thinking["metadata"] == {"title": "Thinking"}
    assert bubble["metadata"]["title"].startswith(f"Gemini: draft 1 of 2 \u00b7 {MODEL} \u00b7 ")
    image, caption = draft["content"]
    assert image["alt_text"] == "Draft 1 of 2 \u2014 the final image replaces it"
    assert caption == f"*{image['alt_text']}*"
    assert Path(image["path"]).read_bytes() == DRAFT.data

    provider.gate.set()
    answered = await asyncio.wait_for(anext(steps), timeout=10)
    assert answered[ui.stop].visible is False
    assert "Draft 1" not in texts(answered[ui.chatbot]) and "Thinking" not in texts(answered[ui.chatbot])
    assert answered[ui.chatbot][-1]["content"][0].startswith("Stormy now.")


async def test_stop_keeps_the_message_stores_a_stopped_answer_and_retry_answers_again(page, provider):
    ui, handlers, _ = page
    provider.gate = asyncio.Event()
    steps = submitting(handlers, "a lighthouse")
    stored = await anext(steps)
    conversation_id = stored[ui.conversation_id]
    await asyncio.wait_for(provider.entered.get(), timeout=10)

    stopped = await handlers.on_stop(FakeRequest(), conversation_id, "", OWNER)

    assert stopped[ui.stop].visible is False
    user, answer = stopped[ui.chatbot]
    assert user["content"] == ["a lighthouse"]
    assert answer["content"].startswith("\u26a0\ufe0f You stopped this answer")
    rest = [update async for update in steps]  # the page's own stream ends with the same answer
    assert rest[-1][ui.chatbot] == stopped[ui.chatbot] and rest[-1][ui.stop].visible is False

    provider.gate.set()
    provider.queue.append(reply_with_image(png((1, 2, 3)), text="A lighthouse."))
    *_, retried = await retry(handlers, conversation_id)
    assert retried[ui.chatbot][-1]["content"][0].startswith("A lighthouse.")


async def test_only_a_writer_can_stop_and_a_refusal_says_why(page, provider, library):
    ui, handlers, _ = page
    provider.gate = asyncio.Event()
    steps = submitting(handlers, "a lighthouse")
    conversation_id = (await anext(steps))[ui.conversation_id]
    await asyncio.wait_for(provider.entered.get(), timeout=10)
    refused = await handlers.on_stop(FakeRequest(), conversation_id, "", "stranger-cccccccccccccccccc")
    assert refused[ui.status] and ui.chatbot not in refused
    provider.queue.append(reply_with_image(png((1, 2, 3))))
    provider.gate.set()
    *_, answered = [update async for update in steps]
    assert answered[ui.chatbot][-1]["content"][1]["path"].endswith(".png")


# --- the API -----------------------------------------------------------------------------------


async def test_send_streams_transcripts_with_progress_and_ends_with_todays_transcript(
    service, library, provider, tmp_path
):
    api = ApiHandlers(
        service,
        library,
        default_model=CONFIG.default_model,
        default_openai_model=CONFIG.default_openai_model,
        max_upload_bytes=CONFIG.max_upload_bytes,
        proxies=CONFIG.proxies,
        files=FileMaker(service.image_path, tmp_path / "files"),
    )
    provider.shows = [Progress("gemini", Phase.DRAFT, MODEL, drafts=(DRAFT,), drafts_expected=2)]
    provider.queue.append(reply_with_image(png((1, 2, 3))))
    outputs = [t async for t in api.send("", "a lighthouse", key=OWNER)]

    *running, final = outputs
    assert running[0]["progress"]["phase"] == "waiting" and running[0]["awaiting_answer"]
    assert running[-1]["progress"]["phase"] == "draft" and running[-1]["progress"]["drafts"] == 1
    assert "c2ln" not in json.dumps(running)  # no signatures, and no bytes: counts only
    stored = await service.load(Actor(OWNER), final["conversation_id"])
    assert final == to_transcript(stored)


def test_variants_show_one_pending_bubble_with_a_line_each_and_each_variants_newest_draft() -> None:
    running = [
        Progress("gemini", Phase.THINKING, model=MODEL, thoughts="Composing"),
        None,
        Progress("gemini", Phase.DRAFT, model=MODEL, drafts=(DRAFT, SECOND_DRAFT)),
    ]
    messages = turn_progress_messages(
        running, working_model=MODEL, elapsed_s=3, draft_paths=[None, None, "/staged/draft-c.png"]
    )
    bubble, draft = messages
    assert bubble["metadata"]["title"].startswith(f"Making 3 variants \u00b7 {MODEL} \u00b7 ")
    assert bubble["metadata"]["status"] == "pending"
    assert bubble["content"].split("\n\n") == [
        "**a**: Gemini is thinking\u2026",
        f"**b**: Editing with {MODEL}\u2026",
        "**c**: Gemini: draft 2",
    ]
    assert draft["content"][0] == {
        "path": "/staged/draft-c.png",
        "alt_text": "Variant c: draft 2 \u2014 the final image replaces it",
    }
    # One call is shown as before.
    assert turn_progress_messages(running[:1], working_model=MODEL, elapsed_s=3) == progress_messages(
        running[0], working_model=MODEL, elapsed_s=3
    )


def test_api_callers_read_each_variants_progress() -> None:
    running = [Progress("gemini", Phase.DRAFT, model=MODEL, drafts=(DRAFT,)), None]
    shown = turn_progress_json(running, working_model=MODEL, elapsed_s=1.26)
    assert shown["phase"] == "draft" and shown["drafts"] == 1
    assert [v["phase"] for v in shown["variants"]] == ["draft", "waiting"]
    assert "variants" not in turn_progress_json(running[:1], working_model=MODEL, elapsed_s=1)
    json.dumps(shown)  # no bytes anywhere


async def test_a_strangers_use_this_says_why_and_shows_nothing_of_the_conversation(page, provider):
    ui, handlers, _ = page
    provider.queue.append(reply_with_image(png((1, 2, 3))))
    *_, answered = [update async for update in submitting(handlers, "a lighthouse")]
    conversation_id = answered[ui.conversation_id]
    refused = await handlers.on_pick("stranger-dddddddddddddddddd", conversation_id, "", 1)
    assert refused[ui.status] and ui.chatbot not in refused
