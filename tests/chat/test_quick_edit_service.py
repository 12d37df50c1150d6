"""ChatService.quick_edit on real storage: two turns stored, replayed as the user's own image, refusals."""

from __future__ import annotations

import asyncio
import base64

import pytest

from chat.domain import LOCAL_PROVIDER, GenerationOptions, ImageRole, Role
from chat.errors import AccessError, BusyError, InputError, UnavailableError
from chat.media.quick_edits import parse_quick_edit
from chat.providers.gemini.wire import build_contents
from chat.sharing.access import Actor
from tests.fakes import FakeProvider, last, make_library, make_service, reply_with_image
from tests.pictures import opened, picture_png

pytestmark = pytest.mark.both_databases

ACTOR = Actor("owner-of-the-quick-edits-1")
OPTIONS = GenerationOptions(model="gemini-3.1-flash-image")
ROTATE = parse_quick_edit({"kind": "rotate", "degrees": 90})


async def answered(service, provider, text="a lighthouse", conversation_id=None, size=(64, 48)):
    provider.queue.append(reply_with_image(picture_png(size), signature="c2lnbmVk"))
    return await last(service.send(ACTOR, conversation_id, text, options=OPTIONS))


async def test_a_quick_edit_stores_a_message_and_a_local_answer_with_the_edited_image(
    service, provider, tmp_path
) -> None:
    conversation = await answered(service, provider)

    step = await service.quick_edit(ACTOR, conversation.id, None, ROTATE)

    turns = step.conversation.turns
    assert [t.role for t in turns] == [Role.USER, Role.ASSISTANT, Role.USER, Role.ASSISTANT]
    request, answer = turns[2], turns[3]
    assert request.text() == "rotate 90\u00b0 right (local)" and not request.images()
    assert (answer.provider, answer.model, answer.picked) == (LOCAL_PROVIDER, "rotate 90\u00b0 right", True)
    assert answer.usage is not None and answer.usage.total_tokens == 0 and answer.cost_usd == 0
    assert not step.conversation.awaiting_answer()
    image = answer.shown_image()
    assert image is not None and image.role is ImageRole.ANSWER and image.mime_type == "image/png"
    assert step.conversation.latest_image() == image
    edited = opened(service.image_path(image).read_bytes())
    assert edited.size == (48, 64)
    assert step.conversation.cost_usd() == conversation.cost_usd()
    assert len(provider.calls) == 1  # no model was asked
    reopened = await make_service(tmp_path / "data", FakeProvider()).load(ACTOR, conversation.id)
    assert reopened == step.conversation


async def test_the_next_message_replays_the_quick_edit_as_the_users_own_image(service, provider) -> None:
    conversation = await answered(service, provider)
    edited = (await service.quick_edit(ACTOR, conversation.id, None, ROTATE)).conversation
    await answered(service, provider, "now at night", conversation.id)

    history = provider.calls[-1]
    assert [t.provider for t in history if t.role is Role.ASSISTANT] == ["gemini", LOCAL_PROVIDER]
    contents = build_contents(history, service._load_image, model=OPTIONS.model)
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert [p.get("thoughtSignature") for p in contents[1]["parts"]] == ["c2lnbmVk", "c2lnbmVk"]
    rotated = edited.turns[3].shown_image()
    rotated_b64 = base64.b64encode(service.image_path(rotated).read_bytes()).decode()
    assert contents[2]["parts"] == [
        {"text": "rotate 90\u00b0 right (local)"},
        {
            "text": "(The current image, which the user edited themselves: rotate 90\u00b0 right. "
            "Do not repeat that edit.)"
        },
        {"inlineData": {"mimeType": "image/png", "data": rotated_b64}},
        {"text": "now at night"},
    ]


async def test_an_older_version_can_be_edited_and_edit_from_here_undoes_in_one_step(
    service, provider, engine, tmp_path
) -> None:
    first = await answered(service, provider, size=(64, 48))
    await answered(service, provider, "wider", first.id, size=(80, 40))
    crop = parse_quick_edit({"kind": "crop", "left": 0, "top": 0, "right": 32, "bottom": 24})

    edited = (await service.quick_edit(ACTOR, first.id, 1, crop)).conversation  # v1, not the newest

    assert opened(service.image_path(edited.latest_image()).read_bytes()).size == (32, 24)
    library = make_library(tmp_path / "data", engine, service)
    undone = await library.fork(ACTOR, first.id, through_seq=3)  # "Edit from here" on v2
    assert len(undone.turns) == 4 and undone.latest_image() == edited.turns[3].shown_image()
    assert (await service.load(ACTOR, first.id)) == edited  # the original is unchanged


async def test_quick_edits_are_refused_for_read_only_links_strangers_and_bad_versions(
    service, provider, engine, tmp_path
) -> None:
    conversation = await answered(service, provider)
    library = make_library(tmp_path / "data", engine, service)
    view = await library.share(ACTOR, conversation.id, "view")

    with pytest.raises(AccessError):
        await service.quick_edit(Actor(None, view.token), conversation.id, None, ROTATE)
    with pytest.raises(AccessError):
        await service.quick_edit(Actor("someone-else-entirely-1"), conversation.id, None, ROTATE)
    for bad in (0, 2, 7, -1, True, "1"):
        with pytest.raises(InputError, match="no such version"):
            await service.quick_edit(ACTOR, conversation.id, bad, ROTATE)
    too_big = parse_quick_edit({"kind": "crop", "left": 0, "top": 0, "right": 65, "bottom": 48})
    with pytest.raises(InputError, match="outside the image"):
        await service.quick_edit(ACTOR, conversation.id, None, too_big)
    cont = await library.share(ACTOR, conversation.id, "continue")
    step = await service.quick_edit(Actor(None, cont.token), conversation.id, None, ROTATE)
    assert len(step.conversation.turns) == 4
    assert len((await service.load(ACTOR, conversation.id)).turns) == 4  # the refusals stored nothing


async def test_a_quick_edit_is_refused_while_a_turn_runs_and_while_a_message_awaits_its_answer(
    service, provider
) -> None:
    conversation = await answered(service, provider)
    provider.gate = asyncio.Event()
    provider.queue.append(UnavailableError("gemini", "503"))
    steps = service.send(ACTOR, conversation.id, "now at night", options=OPTIONS)
    await anext(steps)
    await provider.entered.get()
    with pytest.raises(BusyError):
        await service.quick_edit(ACTOR, conversation.id, None, ROTATE)
    provider.gate.set()
    failed = await last(steps)
    assert failed.awaiting_answer()
    with pytest.raises(InputError, match="Retry"):
        await service.quick_edit(ACTOR, conversation.id, None, ROTATE)


async def test_a_quick_edit_is_refused_at_once_while_another_replicas_turn_holds_the_lease(
    service, provider, tmp_path, engine
) -> None:
    conversation = await answered(service, provider)
    other_provider = FakeProvider()
    there = make_service(tmp_path / "data", other_provider, engine=engine)  # its own leases, same database
    other_provider.gate = asyncio.Event()
    other_provider.queue.append(reply_with_image(picture_png()))
    steps = there.send(ACTOR, conversation.id, "now at night", options=OPTIONS)
    await anext(steps)
    await other_provider.entered.get()
    with pytest.raises(BusyError):
        await service.quick_edit(ACTOR, conversation.id, None, ROTATE)
    other_provider.gate.set()
    await last(steps)
    step = await service.quick_edit(ACTOR, conversation.id, None, ROTATE)  # the lease was given up
    assert [t.provider for t in step.conversation.turns[1::2]] == ["gemini", "gemini", LOCAL_PROVIDER]


async def test_a_quick_edit_survives_export_and_import(service, provider, engine, tmp_path) -> None:
    conversation = await answered(service, provider)
    edited = (await service.quick_edit(ACTOR, conversation.id, None, ROTATE)).conversation
    library = make_library(tmp_path / "data", engine, service)
    _, data = await library.export(ACTOR, conversation.id)
    imported = await library.import_zip(Actor("someone-who-imports-1"), data)
    local = imported.turns[-1]
    assert (local.provider, local.model, local.picked) == (LOCAL_PROVIDER, "rotate 90\u00b0 right", True)
    assert local.shown_image() == edited.turns[-1].shown_image()
