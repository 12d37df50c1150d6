"""Titles other people see: no control characters, no bidi overrides, one line."""

from __future__ import annotations

from chat.sharing.access import Actor
from chat.text import one_line
from tests.chat.test_service import OPTIONS
from tests.fakes import FakeProvider, collect, make_library, make_service, migrated_engine, reply_with_image
from tests.pictures import png

FORGED = "Pink\u202e gpj.exe\x1b[31m\r\nsky\u2066\u2069\u202a\x00\x7f\x85"


def test_one_line_drops_every_control_and_bidi_character():
    assert one_line(FORGED) == "Pink gpj.exe [31m sky"
    for code in [*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]:
        assert one_line(f"a{chr(code)}b") == "a b", hex(code)
    assert one_line("  Nuit   étoilée \u200d🌙 ") == "Nuit étoilée \u200d🌙"  # joiners and emoji stay


async def test_titles_from_a_message_and_from_rename_are_clean(tmp_path):
    engine = migrated_engine(tmp_path)
    provider = FakeProvider()
    provider.queue.append(reply_with_image(png((3, 3, 3))))
    service = make_service(tmp_path, provider, engine=engine)
    library = make_library(tmp_path, engine, service)
    owner = Actor("owner-" + "t" * 20)
    *_, sent = await collect(service.send(owner, None, FORGED, options=OPTIONS))
    assert sent.title == "Pink gpj.exe [31m sky"
    await library.rename(owner, sent.id, "\u202eRenamed\x1b")
    [listed] = await library.list(owner)
    assert listed.title == "Renamed"
