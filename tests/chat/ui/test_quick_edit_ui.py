"""The Quick edit buttons' handlers: the new version shows at once; refusals say why in the chat."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from chat.sharing.access import Actor
from tests.chat.ui.test_events import MATE, OWNER, submit
from tests.fakes import FakeRequest, reply_with_image
from tests.pictures import opened, picture_png

ROTATE_RIGHT = {"kind": "rotate", "degrees": 90}


async def answered(ui, handlers, provider) -> dict:
    provider.queue.append(reply_with_image(picture_png((64, 48))))
    *_, done = await submit(handlers, "a lighthouse")
    return done


async def test_rotate_right_shows_the_new_version_in_the_chat_and_the_versions(page, provider) -> None:
    ui, handlers, panels = page
    done = await answered(ui, handlers, provider)
    [(_, v1)] = done[ui.versions.choice].choices

    shown = await panels.fixed_edit(ROTATE_RIGHT)(OWNER, done[ui.conversation_id], "", v1)

    choices = shown[ui.versions.choice]
    assert [label for label, _ in choices.choices] == [
        "v1 \u00b7 Gemini gemini-3.1-flash-image",
        "v2 \u00b7 rotate 90\u00b0 right (local)",
    ]
    assert choices.value == choices.choices[-1][1]  # the new version is the one chosen
    request, answer = shown[ui.chatbot][-2:]
    assert request == {"role": "user", "content": ["rotate 90\u00b0 right (local)"]}
    caption, image = answer["content"]
    assert caption == "*v2 \u00b7 rotate 90\u00b0 right (local)*"  # no tokens, no cost
    assert opened(Path(image["path"]).read_bytes()).size == (48, 64)
    assert "New version v2" in shown[ui.status] and "Undo is one click" in shown[ui.status]
    undo = shown[ui.versions.quick.undo]
    assert undo.visible is True and undo.value == "Undo: edit from v1"
    assert ui.library.gallery in shown  # the conversation's thumbnail is the new version


async def test_crop_and_resize_take_the_panels_numbers(page, provider) -> None:
    ui, handlers, panels = page
    done = await answered(ui, handlers, provider)
    cid = done[ui.conversation_id]

    cropped = await panels.on_crop(OWNER, cid, "", None, 0, 0, 50, 50, "%")
    resized = await panels.on_resize(OWNER, cid, "", None, 64, 0)  # the page's empty number is 0

    labels = [label for label, _ in resized[ui.versions.choice].choices]
    assert labels[1:] == [
        "v2 \u00b7 crop 0,0\u201350,50% (local)",
        "v3 \u00b7 resize to 64\u00d7auto (local)",
    ]
    path = resized[ui.chatbot][-1]["content"][1]["path"]
    with Image.open(path) as image:
        assert image.size == (64, 48)  # 32×24 cropped, then 64 wide keeping the shape
    assert [label for label, _ in cropped[ui.versions.choice].choices][-1].startswith("v2 \u00b7 crop")


async def test_a_refused_quick_edit_says_why_in_the_chat_and_stores_nothing(page, provider, library) -> None:
    ui, handlers, panels = page
    done = await answered(ui, handlers, provider)
    cid = done[ui.conversation_id]

    too_small = await panels.on_resize(OWNER, cid, "", None, 8, None)
    assert "each side must be 16" in too_small[ui.chatbot][-1]["content"]
    empty = await panels.on_crop(OWNER, cid, "", None, None, 0, 100, 100, "%")
    assert "four numbers" in empty[ui.chatbot][-1]["content"]
    forged = await panels.fixed_edit(ROTATE_RIGHT)(OWNER, cid, "", "0; drop table")
    assert "no such version" in forged[ui.chatbot][-1]["content"]
    link = await library.share(Actor(OWNER), cid, "view")
    viewer = await handlers.on_load(MATE, FakeRequest(query={"s": link.token}))
    assert viewer[ui.versions.quick.box].visible is False  # no Quick edit buttons for a read-only view
    assert (await handlers.on_load(OWNER, FakeRequest(query={"c": cid})))[ui.versions.quick.box].visible
    read_only = await panels.fixed_edit(ROTATE_RIGHT)(MATE, cid, link.token, None)
    assert "read-only" in read_only[ui.chatbot][-1]["content"].lower()
    stranger = await panels.fixed_edit(ROTATE_RIGHT)(MATE, cid, "", None)
    assert "share link" in stranger[ui.chatbot][-1]["content"]
    assert stranger[ui.versions.choice].choices == []  # nothing of someone else's conversation is shown
    opened_again = await handlers.on_load(OWNER, FakeRequest(query={"c": cid}))
    assert len(opened_again[ui.versions.choice].choices) == 1


async def test_undo_is_one_click_edit_from_here_on_the_version_before(page, provider) -> None:
    ui, handlers, panels = page
    done = await answered(ui, handlers, provider)
    assert done[ui.versions.quick.undo].visible is False  # a model's answer: nothing to undo
    shown = await panels.fixed_edit(ROTATE_RIGHT)(OWNER, done[ui.conversation_id], "", None)

    undone = await panels.on_undo(OWNER, shown[ui.conversation_id], "", FakeRequest())

    assert "starts from v1" in undone[ui.status] and undone[ui.conversation_id] != shown[ui.conversation_id]
    assert len(undone[ui.chatbot]) == 2 and undone[ui.versions.quick.undo].visible is False
    nothing = await panels.on_undo(OWNER, undone[ui.conversation_id], "", FakeRequest())
    assert nothing[ui.status] == "The newest version is no quick edit."
    stranger = await panels.on_undo(MATE, shown[ui.conversation_id], "", FakeRequest())
    assert "belongs to someone else" in stranger[ui.status]


async def test_edit_from_here_on_the_version_before_undoes_a_quick_edit(page, provider) -> None:
    ui, handlers, panels = page
    done = await answered(ui, handlers, provider)
    shown = await panels.fixed_edit(ROTATE_RIGHT)(OWNER, done[ui.conversation_id], "", None)
    [(_, v1), _] = shown[ui.versions.choice].choices

    undone = await panels.on_fork(OWNER, shown[ui.conversation_id], "", v1, FakeRequest())

    assert "starts from v1" in undone[ui.status]
    assert len(undone[ui.chatbot]) == 2  # the first message and its answer: the rotation is gone
    assert [label for label, _ in undone[ui.versions.choice].choices] == [
        "v1 \u00b7 Gemini gemini-3.1-flash-image"
    ]
