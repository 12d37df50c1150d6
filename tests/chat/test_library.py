"""ConversationLibrary and the Gatekeeper: sharing, revoking, forking, export/import, owners."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import sqlite3
from collections import Counter

import pytest

from chat.conversation.service import Attachment, ChatService, InputLimits
from chat.domain import ImagePart, Role
from chat.errors import AccessError, InputError, LimitError
from chat.limits.guard import Guard, Limits
from chat.media.images import ImageLimits
from chat.sharing.access import Actor, new_owner_id, new_share_token
from chat.sharing.library import ConversationLibrary
from tests.chat.test_service import OPTIONS
from tests.fakes import FakeProvider, collect, make_library, make_service, migrated_engine, reply_with_image
from tests.pictures import png

pytestmark = pytest.mark.both_databases

OWNER = Actor("owner-" + "a" * 20)
MATE = "mate-" + "b" * 20


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def engine(tmp_path):
    return migrated_engine(tmp_path)


@pytest.fixture
def parts(tmp_path, engine, provider):
    service = make_service(tmp_path, provider, engine=engine)
    return service, make_library(tmp_path, engine, service)


async def two_turns(service: ChatService, provider: FakeProvider):
    provider.queue += [reply_with_image(png((1, 1, 1)), signature="b25l"), reply_with_image(png((2, 2, 2)))]
    *_, first = await collect(
        service.send(OWNER, None, "a cat", [Attachment("cat.png", png((7, 7, 7)))], options=OPTIONS)
    )
    *_, second = await collect(service.send(OWNER, first.id, "orange", options=OPTIONS))
    return second


def test_tokens_are_unguessable():
    tokens = [new_share_token() for _ in range(1000)]
    assert len(set(tokens)) == 1000
    raw = base64.urlsafe_b64decode(tokens[0] + "==")
    assert len(raw) * 8 >= 128
    counts = Counter("".join(tokens))
    entropy = -sum(c / sum(counts.values()) * math.log2(c / sum(counts.values())) for c in counts.values())
    assert entropy > 5.8  # close to log2(64) = 6 bits per character: no visible structure
    assert len(base64.urlsafe_b64decode(new_owner_id() + "==")) * 8 >= 128


async def test_read_only_link_reads_but_never_writes(parts, provider):
    service, library = parts
    conversation = await two_turns(service, provider)
    link = await library.share(OWNER, conversation.id, "view")
    viewer = Actor(MATE, link.token)
    assert (await service.load(viewer, conversation.id)) == conversation
    with pytest.raises(AccessError, match="read-only"):
        await collect(service.send(viewer, conversation.id, "hijack", options=OPTIONS))
    with pytest.raises(AccessError):
        await collect(service.retry(viewer, conversation.id, options=OPTIONS))
    for owner_only in (
        library.rename(viewer, conversation.id, "mine"),
        library.delete(viewer, conversation.id),
        library.share(viewer, conversation.id, "continue"),
        library.links(viewer, conversation.id),
    ):
        with pytest.raises(AccessError, match="Only the owner"):
            await owner_only
    assert (await service.load(OWNER, conversation.id)) == conversation


async def test_continue_link_can_send_but_not_manage(parts, provider):
    service, library = parts
    conversation = await two_turns(service, provider)
    link = await library.share(OWNER, conversation.id, "continue")
    mate = Actor(MATE, link.token)
    provider.queue.append(reply_with_image(png((3, 3, 3))))
    *_, continued = await collect(service.send(mate, conversation.id, "bigger", options=OPTIONS))
    assert len(continued.turns) == 6
    with pytest.raises(AccessError):
        await library.revoke(mate, conversation.id, link.token)


async def test_a_link_only_opens_its_own_conversation(parts, provider):
    service, library = parts
    first = await two_turns(service, provider)
    other = await two_turns(service, provider)
    link = await library.share(OWNER, first.id, "continue")
    with pytest.raises(AccessError):
        await service.load(Actor(MATE, link.token), other.id)


async def test_revoked_link_stops_working(parts, provider):
    service, library = parts
    conversation = await two_turns(service, provider)
    link = await library.share(OWNER, conversation.id, "view")
    assert await library.revoke(OWNER, conversation.id, link.token)
    with pytest.raises(AccessError, match="revoked"):
        await service.load(Actor(MATE, link.token), conversation.id)
    assert await library.links(OWNER, conversation.id) == []


async def test_fork_keeps_history_and_leaves_the_original_untouched(parts, provider):
    service, library = parts
    original = await two_turns(service, provider)
    link = await library.share(OWNER, original.id, "view")
    branch = await library.fork(Actor(MATE, link.token), original.id, through_seq=1)
    assert branch.id != original.id and branch.turns == original.turns[:2]
    assert branch.latest_image() == original.turns[1].shown_image()
    provider.queue.append(reply_with_image(png((4, 4, 4))))
    await collect(service.send(Actor(MATE), branch.id, "now blue", options=OPTIONS))
    assert (await service.load(OWNER, original.id)) == original
    assert [s.title for s in await library.list(Actor(MATE))] == ["Branch of a cat"]


async def test_export_then_import_round_trips_images_byte_for_byte(parts, provider):
    service, library = parts
    original = await two_turns(service, provider)
    name, data = await library.export(OWNER, original.id)
    assert name == "retouch-a-cat.zip"
    imported = await library.import_zip(Actor(MATE), data)
    assert [t.role for t in imported.turns] == [Role.USER, Role.ASSISTANT] * 2
    for before, after in zip(original.turns, imported.turns, strict=True):
        assert [p.sha256 for p in before.images()] == [p.sha256 for p in after.images()]
        for part in after.images():
            assert hashlib.sha256(service.image_path(part).read_bytes()).hexdigest() == part.sha256
        assert before.parts == after.parts  # thought signatures included: the import replays
    assert (await library.list(Actor(MATE)))[0].title == "a cat"


async def test_import_is_held_to_the_limits_a_message_is_typed_and_uploaded_with(
    parts, provider, engine, tmp_path
):
    service, library = parts
    _, data = await library.export(OWNER, (await two_turns(service, provider)).id)

    def held_to(limits: InputLimits) -> ConversationLibrary:
        return make_library(tmp_path, engine, service, input_limits=limits)

    with pytest.raises(
        InputError, match="Turn 3 is a message of 6 characters; this Retouch takes messages of at most 5"
    ):
        await held_to(InputLimits(max_prompt_chars=5)).import_zip(Actor(MATE), data)
    with pytest.raises(InputError, match="has 768 pixels; the limit is 100"):
        await held_to(InputLimits(images=ImageLimits(max_pixels=100))).import_zip(Actor(MATE), data)
    assert await library.list(Actor(MATE)) == []


async def test_only_an_owner_id_can_import(parts, provider):
    service, library = parts
    conversation = await two_turns(service, provider)
    _, data = await library.export(OWNER, conversation.id)
    link = await library.share(OWNER, conversation.id, "continue")
    with pytest.raises(AccessError):
        await library.import_zip(Actor(None, link.token), data)


async def test_list_is_per_owner_newest_first_and_searchable(parts, provider):
    service, library = parts
    first = await two_turns(service, provider)
    second = await two_turns(service, provider)
    await library.rename(OWNER, second.id, "Lighthouse at dusk")
    assert [s.id for s in await library.list(OWNER)] == [second.id, first.id]
    assert [s.title for s in await library.list(OWNER, "light")] == ["Lighthouse at dusk"]
    assert await library.list(Actor(MATE)) == []
    shown = second.turns[-1].shown_image()  # the thumbnail names the image, without its provider data
    assert shown is not None
    assert (await library.list(OWNER))[0].thumbnail == ImagePart(shown.sha256, shown.mime_type)


async def test_concurrent_sends_on_one_continue_link_keep_order(parts, provider):
    service, library = parts
    conversation = await two_turns(service, provider)
    link = await library.share(OWNER, conversation.id, "continue")
    provider.queue += [reply_with_image(png((i, i, i))) for i in range(10, 14)]
    senders = [Actor(MATE, link.token), OWNER, Actor(MATE, link.token), OWNER]
    await asyncio.gather(
        *(
            collect(service.send(actor, conversation.id, f"edit {i}", options=OPTIONS))
            for i, actor in enumerate(senders)
        )
    )
    final = await service.load(OWNER, conversation.id)
    assert [t.role for t in final.turns] == [Role.USER, Role.ASSISTANT] * 6
    assert sorted(t.text() for t in final.turns[4::2]) == [f"edit {i}" for i in range(4)]
    assert [len(call) for call in provider.calls[2:]] == [5, 7, 9, 11]  # each saw every earlier turn


async def test_imports_and_forks_count_against_the_visitors_rate_limit(tmp_path, engine, provider):
    service = make_service(tmp_path, provider, engine=engine)
    guard = Guard(Limits(per_visitor_per_minute=2), engine=engine)
    library = make_library(tmp_path, engine, service, guard=guard)
    source = await two_turns(service, provider)
    _, data = await library.export(OWNER, source.id)
    visitor = Actor(OWNER.owner_id, visitor="203.0.113.5")
    await library.fork(visitor, source.id)
    await library.import_zip(visitor, data)
    with pytest.raises(LimitError, match="2 copies and imports in the last minute"):
        await library.fork(visitor, source.id)
    # Another key from the same address is the same visitor; edits are counted on their own.
    with pytest.raises(LimitError):
        await library.import_zip(Actor("other-key-" + "c" * 12, visitor="203.0.113.5"), data)
    assert guard is not None and len(await library.list(OWNER)) == 3


async def test_reading_share_links_never_waits_for_a_writer(parts, provider, tmp_path):
    service, library = parts
    conversation = await two_turns(service, provider)
    await library.share(OWNER, conversation.id, "view")
    writer = sqlite3.connect(tmp_path / "retouch.sqlite3", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock (a long import)
    try:
        links = await asyncio.wait_for(library.links(OWNER, conversation.id), timeout=2)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert [link.kind for link in links] == ["view"]
