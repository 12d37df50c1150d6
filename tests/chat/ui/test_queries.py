"""What the common page events cost the database: transactions, writes and SELECTs, counted on the engine.

The page is built from what the service returned, so a send on an existing conversation
costs the access check (with the turn's lease and the stored version, in one write), the two
writes of the turn (the message, then the answer, which gives the lease up) and one read of
"My conversations"; nothing re-checks access, and no read takes the write lock.
Figures before this was so (commit f656f2b, same events): a send 11 transactions (2 of them
writes) and 18 SELECTs; a load with ?c= or a gallery click 5 and 8; a retry 10 and 15; a new
share link 7 and 10; "New conversation" 1 and 2.

The guard (rate limits, the daily cap) adds its admission, one write transaction, to a send.
Before its counts were shared (the rate limits in memory, the cap read, then checked): 4
transactions (2 writes) and 2 SELECTs without a cap, 5 (2 writes) and 3 SELECTs with one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from chat.sharing.access import Actor
from chat.ui.events import Handlers
from tests.chat.ui.test_events import MATE, OWNER, FakeRequest, retry, submit
from tests.fakes import reply_with_image
from tests.pictures import png


@dataclass
class Counts:
    """Transactions begun (and how many took the write lock) and SELECTs sent, since the last ``take``."""

    transactions: int = 0
    writes: int = 0
    selects: int = 0
    statements: list[str] = field(default_factory=list)

    def take(self) -> Counts:
        taken = Counts(self.transactions, self.writes, self.selects, self.statements)
        self.transactions = self.writes = self.selects = 0
        self.statements = []
        return taken


@pytest.fixture
def counts(engine: Engine):
    counted = Counts()

    def begin(connection: Connection) -> None:
        counted.transactions += 1
        counted.writes += not connection.get_execution_options().get("retouch_read_only", False)

    def before_cursor_execute(connection, cursor, statement: str, *_args) -> None:
        counted.statements.append(statement)
        counted.selects += statement.lstrip().upper().startswith("SELECT")

    event.listen(engine, "begin", begin)
    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    yield counted
    event.remove(engine, "begin", begin)
    event.remove(engine, "before_cursor_execute", before_cursor_execute)


@dataclass(frozen=True)
class Select:
    index: int


async def a_conversation(handlers: Handlers, ui, provider) -> str:
    """A conversation of OWNER's with one message and its image answer, made through the page."""
    provider.queue.append(reply_with_image(png((9, 9, 9)), text="A cat."))
    *_, done = await submit(handlers, "a cat")
    return done[ui.conversation_id]


async def test_a_send_on_an_existing_conversation_is_four_transactions(page, provider, counts):
    ui, handlers, _ = page
    conversation_id = await a_conversation(handlers, ui, provider)
    provider.queue.append(reply_with_image(png((8, 8, 8)), text="Orange now."))
    counts.take()
    stored, answered = await submit(handlers, "make it orange", conversation_id)
    sent = counts.take()
    assert answered[ui.chatbot][-1]["content"][0].startswith("Orange now.")
    # access, the lease and the stored version (write), the message (write), the answer with the
    # lease given up (write), "My conversations" (read)
    assert (sent.transactions, sent.writes) == (4, 3), sent.statements
    # the access check, the version and "My conversations": the lease is INSERT ... SELECT, each
    # write is UPDATE ... RETURNING and INSERTs
    assert sent.selects == 3, sent.statements
    # The first step shows the stored message; the sidebar and versions wait for the answer.
    assert ui.library.gallery not in stored and ui.versions.choice not in stored
    assert ui.library.links not in stored and ui.library.title not in stored
    assert stored[ui.chatbot][-1]["metadata"]["status"] == "pending"


@pytest.mark.parametrize(
    ("guard", "selects"), [(0.0, 4), (5.0, 5)], indirect=["guard"], ids=["limits", "limits and a cap"]
)
async def test_the_guard_adds_one_write_to_a_send_its_admission(page, provider, counts, selects):
    ui, handlers, _ = page
    conversation_id = await a_conversation(handlers, ui, provider)
    provider.queue.append(reply_with_image(png((8, 8, 8)), text="Orange now."))
    counts.take()
    await submit(handlers, "make it orange", conversation_id)
    sent = counts.take()
    # the rate limits (and the turn's reservation against the cap) in one transaction under the
    # lease, before the message; the answer's write settles the reservation
    assert (sent.transactions, sent.writes) == (5, 4), sent.statements
    # the rate counts (and the spend with what is reserved), besides the three a send always makes
    assert sent.selects == selects, sent.statements


async def test_reads_of_the_other_common_events_never_take_the_write_lock(page, provider, counts):
    ui, handlers, _ = page
    conversation_id = await a_conversation(handlers, ui, provider)
    counts.take()
    loaded = await handlers.on_load(OWNER, FakeRequest({"c": conversation_id}))
    load = counts.take()
    opened = await handlers.on_open(OWNER, [conversation_id], Select(0), FakeRequest())  # type: ignore[arg-type]
    open_ = counts.take()
    assert loaded[ui.chatbot] == opened[ui.chatbot] and ui.library.gallery not in opened
    # open (access + the conversation), its share links, "My conversations"
    assert (load.transactions, load.writes, load.selects) == (3, 0, 6), load.statements
    assert (open_.transactions, open_.writes, open_.selects) == (2, 0, 5), open_.statements
    provider.queue.append(reply_with_image(png((7, 7, 7))))
    await retry(handlers, conversation_id)
    retried = counts.take()
    # access with the lease (write), the answer giving it up (write), "My conversations" (read)
    assert (retried.transactions, retried.writes) == (3, 2), retried.statements
    assert retried.selects <= 5, retried.statements


async def test_a_new_conversation_shows_its_owner_tools_without_reading_them(page, provider, counts):
    ui, handlers, _ = page
    provider.queue.append(reply_with_image(png((9, 9, 9))))
    stored, answered = await submit(handlers, "a cat")
    new = counts.take()
    assert stored[ui.library.links] == "No share links yet." and stored[ui.library.owner_tools].visible
    assert [title for _, title in answered[ui.library.gallery]] == ["a cat"]
    # the message (write; a new id is not looked up), the answer (write), "My conversations" (read)
    assert (new.transactions, new.writes) == (3, 2), new.statements


async def test_sharing_reads_only_the_links_and_a_new_page_reads_nothing(page, provider, counts):
    ui, handlers, panels = page
    conversation_id = await a_conversation(handlers, ui, provider)
    counts.take()
    shared = await panels.on_share_view(OWNER, conversation_id, FakeRequest())
    share = counts.take()
    assert "?s=" in shared[ui.library.links] and ui.chatbot not in shared
    # check ownership (read), the new link (write), the links with the check again (read)
    assert (share.transactions, share.writes) == (3, 1), share.statements
    empty = await handlers.on_new(OWNER)
    assert empty[ui.chatbot] == [] and ui.library.gallery not in empty
    assert counts.take().transactions == 0


@pytest.mark.parametrize("through_a_link", [False, True], ids=["owner", "view link"])
async def test_an_idle_tick_is_one_select_and_no_write(page, provider, library, counts, through_a_link):
    ui, handlers, _ = page
    conversation_id = await a_conversation(handlers, ui, provider)
    token = (await library.share(Actor(OWNER), conversation_id, "view")).token if through_a_link else ""
    viewer = MATE if through_a_link else OWNER
    boxes = list((await handlers.on_tick(viewer, conversation_id, token, "", "", "")).values())
    counts.take()
    for _ in range(3):
        assert list((await handlers.on_tick(viewer, conversation_id, token, *boxes)).values()) == boxes
    idle = counts.take()
    # one read-only transaction and one SELECT each (access, the version and the lease at once); no render
    assert (idle.transactions, idle.writes, idle.selects) == (3, 0, 3), idle.statements
