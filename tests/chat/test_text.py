"""Titles other people see: no control characters, no bidi overrides, one line."""

from __future__ import annotations

from chat.access import Actor
from chat.library import ConversationLibrary
from chat.service import ChatService
from chat.text import one_line
from storage import BlobStore, make_engine, migrate, sqlite_url
from tests.chat.test_service import OPTIONS, FakeProvider, collect, png, reply_with_image, single_try

FORGED = "Pink\u202e gpj.exe\x1b[31m\r\nsky\u2066\u2069\u202a\x00\x7f\x85"


def test_one_line_drops_every_control_and_bidi_character():
    assert one_line(FORGED) == "Pink gpj.exe [31m sky"
    for code in [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]:
        assert one_line(f"a{chr(code)}b") == "a b", hex(code)
    assert one_line("  Nuit   étoilée \u200d🌙 ") == "Nuit étoilée \u200d🌙"  # joiners and emoji stay


async def test_titles_from_a_message_and_from_rename_are_clean(tmp_path):
    engine = make_engine(sqlite_url(tmp_path))
    migrate(engine)
    blobs = BlobStore(tmp_path / "images")
    provider = FakeProvider()
    provider.queue.append(reply_with_image(png((3, 3, 3))))
    service = ChatService(engine=engine, blobs=blobs, policy=single_try(provider))
    library = ConversationLibrary(engine=engine, blobs=blobs, gate=service.gate)
    owner = Actor("owner-" + "t" * 20)
    *_, sent = await collect(service.send(owner, None, FORGED, options=OPTIONS))
    assert sent.title == "Pink gpj.exe [31m sky"
    await library.rename(owner, sent.id, "\u202eRenamed\x1b")
    [listed] = await library.list(owner)
    assert listed.title == "Renamed"
