"""UI handlers called directly with Gradio-shaped payloads; plus a build_ui smoke test."""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gradio as gr
from starlette.requests import Request as StarletteRequest

from chat.conversation.options import parse_options
from chat.domain import Role, TextPart, Turn
from chat.errors import UnavailableError
from chat.limits.visitors import TrustedProxies
from chat.sharing.access import Access, Actor, browser_owner_id
from chat.ui import build_ui
from chat.ui.events import Handlers, UIConfig, client_address
from storage import repository as repo
from storage import session_scope
from tests.fakes import FakeRequest, migrated_engine, reply_with_image
from tests.pictures import png

DEFAULT_OPTIONS = {
    "model": "gemini-3.1-flash-image",
    "aspect_ratio": "auto",
    "image_size": "auto",
    "temperature": None,
    "top_p": None,
    "top_k": None,
    "max_output_tokens": None,
    "seed": None,
    "stop_sequences": "",
    "safety_threshold": "auto",
    "route": "auto",
    "openai_model": "gpt-image-2",
    "openai_size": "auto",
    "openai_quality": "auto",
    "openai_background": "auto",
    "openai_output_format": "auto",
    "openai_output_compression": None,
    "openai_input_fidelity": "auto",
    "budget_usd": None,
    "variants": 1,
}
CONFIG = UIConfig(
    default_model="gemini-3.1-flash-image",
    default_openai_model="gpt-image-2",
    browser_secret="s" * 32,
    files_dir=Path(tempfile.gettempdir()) / f"retouch-test-files-{os.getuid()}",
    max_upload_bytes=1_000_000,
)
OWNER = "owner-aaaaaaaaaaaaaaaaaaaa"
MATE = "teammate-bbbbbbbbbbbbbbbbbb"


async def run(steps) -> list[dict]:
    return [step async for step in steps]


async def submit(
    handlers: Handlers,
    text: str,
    conversation_id: str = "",
    owner: str = OWNER,
    files=(),
    token="",
    profile: gr.OAuthProfile | None = None,
):
    message = {"text": text, "files": [str(f) for f in files]}
    request = FakeRequest()
    return await run(
        handlers.on_submit(
            request,
            profile,
            message=message,
            conversation_id=conversation_id,
            share_token=token,
            owner=owner,
            painter=None,
            gemini_key="",
            openai_key="",
            **DEFAULT_OPTIONS,
        )
    )


async def retry(handlers: Handlers, conversation_id: str, owner: str = OWNER, token: str = "") -> list[dict]:
    request = FakeRequest()
    return await run(
        handlers.on_retry(
            request,
            None,
            conversation_id=conversation_id,
            share_token=token,
            owner=owner,
            gemini_key="",
            openai_key="",
            **DEFAULT_OPTIONS,
        )
    )


def test_option_components_are_named_as_parse_options_takes_them(page):
    ui, _, _ = page
    assert list(ui.options) == list(DEFAULT_OPTIONS)
    assert parse_options(DEFAULT_OPTIONS, default_model=CONFIG.default_model).model == CONFIG.default_model


async def test_submit_shows_pending_then_answer(page, provider, uploads):
    ui, handlers, _ = page
    photo = uploads / "abc" / "photo.png"
    photo.parent.mkdir()
    photo.write_bytes(png((1, 2, 3)))
    provider.queue.append(reply_with_image(png((9, 9, 9)), text="Stormy now."))
    pending, final = await submit(handlers, "stormy sky", files=[photo])
    assert pending[ui.conversation_id] == final[ui.conversation_id] != ""
    assert pending[ui.chatbot][-1]["metadata"]["status"] == "pending"
    assert final[ui.chatbot][-1]["content"][0].startswith("Stormy now.")
    assert [title for _, title in final[ui.library.gallery]] == ["stormy sky"]
    assert final[ui.versions.choice].choices[-1][0].startswith("v1")


async def test_bad_upload_is_a_chat_message_and_nothing_is_stored(page, uploads):
    ui, handlers, _ = page
    bogus = uploads / "notes.png"
    bogus.write_text("not an image")
    [view] = await submit(handlers, "fix", files=[bogus])
    assert view[ui.conversation_id] == ""
    assert "notes.png" in view[ui.chatbot][-1]["content"]
    assert view[ui.library.gallery] == []


async def test_files_outside_the_upload_folder_are_refused(page, tmp_path, uploads):
    ui, handlers, _ = page
    outside = tmp_path / "secret.png"
    outside.write_bytes(png((1, 1, 1)))
    [view] = await submit(handlers, "x", files=[outside])
    assert "could not be found" in view[ui.chatbot][-1]["content"]


async def test_empty_message_is_refused(page):
    ui, handlers, _ = page
    [view] = await submit(handlers, "  ")
    assert "Type what to change" in view[ui.chatbot][-1]["content"]


async def test_load_reopens_your_conversation_and_refuses_a_strangers(page, provider):
    ui, handlers, _ = page
    provider.queue.append(reply_with_image(png((9, 9, 9))))
    *_, done = await submit(handlers, "a cat")
    conversation_id = done[ui.conversation_id]
    mine = await handlers.on_load(OWNER, FakeRequest({"c": conversation_id}))
    assert mine[ui.chatbot] == done[ui.chatbot] and mine[ui.owner] == OWNER
    stranger = await handlers.on_load(MATE, FakeRequest({"c": conversation_id}))
    assert stranger[ui.chatbot] == [] and "belongs to someone else" in stranger[ui.status]


async def test_first_visit_gets_a_fresh_owner_id_and_the_key_hint(page, service):
    ui, handlers, _ = page
    view = await handlers.on_load(ui.owner.preprocess(None), FakeRequest())  # as Gradio calls it
    assert len(view[ui.owner]) >= 22
    no_keys = Handlers(
        service, handlers._library, replace(CONFIG, default_model="m", configured={}), ui, handlers._files
    )
    assert "GEMINI_API_KEY" in (await no_keys.on_load(ui.owner.preprocess(None), FakeRequest()))[ui.status]


def test_the_owner_state_turns_anything_but_an_owner_id_into_a_fresh_one(page):
    ui, _, _ = page
    fresh = {
        ui.owner.preprocess(value) for value in (None, "", 7, ["x"], {"a": 1}, "short", "x" * 101, "a b" * 9)
    }
    assert len(fresh) == 8 and all(len(owner) >= 22 for owner in fresh)
    assert ui.owner.preprocess(OWNER) == OWNER


async def test_read_only_link_shows_history_but_refuses_to_send(page, provider, library):
    ui, handlers, _ = page
    provider.queue.append(reply_with_image(png((9, 9, 9))))
    *_, done = await submit(handlers, "a cat")
    link = await library.share(Actor(OWNER), done[ui.conversation_id], "view")
    view = await handlers.on_load(MATE, FakeRequest({"s": link.token}))
    assert view[ui.chatbot] == done[ui.chatbot]
    assert view[ui.box].visible is False and view[ui.library.owner_tools].visible is False
    # Nor the keys, the painter or the next turn's options: nothing a read-only visitor can use.
    assert [view[panel]["visible"] for panel in ui.for_writers] == [False, False, False]
    assert view[ui.library.duplicate].visible is True
    [refused] = await submit(handlers, "hijack", done[ui.conversation_id], owner=MATE, token=link.token)
    assert "read-only" in refused[ui.chatbot][-1]["content"]
    assert len((await handlers._service.load(Actor(OWNER), done[ui.conversation_id])).turns) == 2


async def test_duplicate_makes_a_shared_conversation_your_own(page, provider, library):
    ui, handlers, panels = page
    provider.queue.append(reply_with_image(png((9, 9, 9))))
    *_, done = await submit(handlers, "a cat")
    link = await library.share(Actor(OWNER), done[ui.conversation_id], "view")
    copy = await panels.on_duplicate(MATE, done[ui.conversation_id], link.token, FakeRequest())
    assert copy[ui.conversation_id] not in ("", done[ui.conversation_id])
    assert copy[ui.share_token] == "" and copy[ui.box].visible is True
    assert [copy[panel]["visible"] for panel in ui.for_writers] == [True, True, True]
    assert [title for _, title in copy[ui.library.gallery]] == ["Copy of a cat"]


async def test_retry_after_failure(page, provider):
    ui, handlers, _ = page
    provider.queue += [UnavailableError("gemini", "503"), reply_with_image(png((3, 3, 3)))]
    *_, failed = await submit(handlers, "x")
    assert "unavailable" in failed[ui.chatbot][-1]["content"]
    *_, retried = await retry(handlers, failed[ui.conversation_id])
    assert retried[ui.chatbot][-1]["content"][1]["path"].endswith(".png")


async def test_owner_can_rename_share_revoke_and_delete(page, provider, library):
    ui, handlers, panels = page
    provider.queue.append(reply_with_image(png((9, 9, 9))))
    *_, done = await submit(handlers, "a cat")
    cid = done[ui.conversation_id]
    renamed = await panels.on_rename(OWNER, cid, "  Cat   portrait ", FakeRequest())
    assert renamed[ui.library.title] == "Cat portrait"
    shared = await panels.on_share_continue(OWNER, cid, FakeRequest())
    assert "http://retouch.test/?s=" in shared[ui.library.links]
    [(_, token)] = shared[ui.library.revoke_choice].choices
    revoked = await panels.on_revoke(OWNER, cid, token, FakeRequest())
    assert revoked[ui.library.links] == "No share links yet."
    stranger = await panels.on_rename(MATE, cid, "mine now", FakeRequest())
    assert "belongs to someone else" in stranger[ui.status]
    gone = await panels.on_delete(OWNER, cid)
    assert gone[ui.library.gallery] == [] and gone[ui.conversation_id] == ""


async def test_edit_from_here_branches_at_that_version(page, provider):
    ui, handlers, panels = page
    provider.queue += [reply_with_image(png((1, 1, 1))), reply_with_image(png((2, 2, 2)))]
    *_, first = await submit(handlers, "a cat")
    *_, second = await submit(handlers, "orange", first[ui.conversation_id])
    [(_, v1), (_, v2)] = second[ui.versions.choice].choices
    branch = await panels.on_fork(OWNER, second[ui.conversation_id], "", v1, FakeRequest())
    assert "starts from v1" in branch[ui.status]
    assert len(branch[ui.chatbot]) == 2  # the first message and its answer, nothing after


def test_build_ui_exposes_the_documented_api(service, library):
    demo = build_ui(service, library, CONFIG)
    assert isinstance(demo, gr.Blocks)
    public = {d.api_name for d in demo.fns.values() if d.api_visibility == "public"}
    assert public == {
        "send",
        "retry",
        "stop",
        "conversation",
        "image",
        "share",
        "revoke",
        "fork",
        "conversations",
        "pick",
        "quick_edit",
    }
    assert demo.delete_cache == (900, 3600)  # Gradio's copies of shown images go an hour after last use
    # No event can take the owner id around its check (chat/ui/owner.py).
    states = [block for d in demo.fns.values() for block in d.inputs if isinstance(block, gr.BrowserState)]
    assert states and all(state.preprocess is browser_owner_id for state in states)


def test_access_levels_order_their_rights():
    assert not Access.VIEW.can_write() and Access.CONTINUE.can_write() and Access.OWNER.can_write()


async def test_a_turn_in_flight_shows_as_pending_to_another_viewer(page, provider):
    ui, handlers, _ = page
    provider.queue += [reply_with_image(png((9, 9, 9))), reply_with_image(png((8, 8, 8)))]
    *_, done = await submit(handlers, "a cat")
    conversation_id = done[ui.conversation_id]
    provider.gate = asyncio.Event()
    running = asyncio.create_task(submit(handlers, "orange", conversation_id))
    await asyncio.wait_for(provider.entered.get(), timeout=10)
    await asyncio.wait_for(provider.entered.get(), timeout=10)  # the second call is at the provider
    other_tab = await handlers.on_load(OWNER, FakeRequest({"c": conversation_id}))
    assert other_tab[ui.chatbot][-1]["metadata"]["status"] == "pending"
    provider.gate.set()
    await running
    after = await handlers.on_load(OWNER, FakeRequest({"c": conversation_id}))
    assert "metadata" not in after[ui.chatbot][-1] or after[ui.chatbot][-1].get("metadata") is None


async def test_a_teammate_continuing_through_a_link_gets_no_owner_tools(page, provider, library):
    ui, handlers, _ = page
    provider.queue += [reply_with_image(png((9, 9, 9))), reply_with_image(png((8, 8, 8)))]
    *_, done = await submit(handlers, "a cat")
    link = await library.share(Actor(OWNER), done[ui.conversation_id], "continue")
    opened = await handlers.on_load(MATE, FakeRequest({"s": link.token}))
    assert opened[ui.library.owner_tools].visible is False and opened[ui.library.links] == ""
    stored, answered = await submit(
        handlers, "orange", done[ui.conversation_id], owner=MATE, token=link.token
    )
    for step in (stored, answered):  # the link's grant, as the service checked it: never the owner's
        assert step[ui.share_token] == link.token and ui.library.owner_tools not in step
        assert ui.library.links not in step
    assert answered[ui.library.gallery] == []  # the teammate owns nothing


async def test_another_replicas_turn_shows_in_progress_until_its_lease_expires(page, provider, tmp_path):
    """A message another replica is answering is not "interrupted… press Retry" (a second paid
    answer); once that replica's lease has expired (it died), it is."""
    ui, handlers, _ = page
    provider.queue.append(reply_with_image(png((9, 9, 9))))
    *_, done = await submit(handlers, "a cat")
    conversation_id = done[ui.conversation_id]
    other_replica = migrated_engine(tmp_path / "data")
    now = datetime.now(UTC)
    with session_scope(other_replica) as session:
        message = Turn(Role.USER, (TextPart("make it orange"),))
        repo.append_turn(session=session, conversation_id=conversation_id, turn=message, now=now)
        expires = now + timedelta(seconds=30)
        repo.acquire_lease(
            session=session, conversation_id=conversation_id, holder="b", now=now, expires_at=expires
        )
    answering = await handlers.on_load(OWNER, FakeRequest({"c": conversation_id}))
    assert answering[ui.chatbot][-1]["metadata"]["status"] == "pending"
    with session_scope(other_replica) as session:  # as if it had died 30 s ago
        repo.renew_lease(session=session, conversation_id=conversation_id, holder="b", expires_at=now)
    interrupted = await handlers.on_load(OWNER, FakeRequest({"c": conversation_id}))
    assert "interrupted" in interrupted[ui.chatbot][-1]["content"]
    other_replica.dispose()


async def test_a_click_in_my_conversations_trusts_only_ids_the_visitor_may_open(page, provider):
    """The tile ids live in the page (a failover keeps them), so they come back as a visitor sent them."""
    ui, handlers, _ = page
    provider.queue.append(reply_with_image(png((9, 9, 9))))
    *_, done = await submit(handlers, "a cat")
    conversation_id = done[ui.conversation_id]
    opened = await handlers.on_open(
        OWNER, [conversation_id], gr.SelectData(None, {"index": 0, "value": None}), FakeRequest()
    )  # type: ignore[arg-type]
    assert opened[ui.chatbot] == done[ui.chatbot]
    stranger = await handlers.on_open(
        MATE, [conversation_id], gr.SelectData(None, {"index": 0, "value": None}), FakeRequest()
    )  # type: ignore[arg-type]
    assert stranger[ui.chatbot] == [] and "belongs to someone else" in stranger[ui.status]
    for hostile in ({"0": conversation_id}, [None], [["x"]], "abc", None, []):
        refused = await handlers.on_open(
            OWNER, hostile, gr.SelectData(None, {"index": 0, "value": None}), FakeRequest()
        )  # type: ignore[arg-type]
        assert refused[ui.chatbot] == [] and refused[ui.status] == "That conversation is gone.", hostile


def test_the_visitor_is_read_from_every_x_forwarded_for_line_not_the_first_one_only():
    """HAProxy's ``option forwardfor`` adds its own line after a forged one the client sent."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.7")],
        "client": ("127.0.0.1", 50000),
    }
    request = gr.Request(request=StarletteRequest(scope))
    proxies = TrustedProxies.parse("127.0.0.1")

    assert client_address(request, proxies) == "203.0.113.7"
    assert client_address(request, TrustedProxies()) == "127.0.0.1"
    assert client_address(FakeRequest(), proxies) == ""  # plain dict headers (a copied request), no peer


def test_the_cost_estimate_follows_the_last_option_changed(service, library):
    """Gradio's default trigger mode drops a change made while the estimate for the one before runs
    (the model picked, then Variants: the page kept "1 answer: …")."""
    demo = build_ui(service, library, CONFIG)
    (estimate,) = [d for d in demo.fns.values() if getattr(d.fn, "__name__", "") == "on_cost"]
    assert estimate.trigger_mode == "always_last"
    assert [event for _, event in estimate.targets].count("load") == 1  # and every option's change
    assert [event for _, event in estimate.targets].count("change") >= 20
