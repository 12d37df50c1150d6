"""Repository: what is written is exactly what is read back, across restarts, or nothing is."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import FrozenInstanceError, replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from chat.domain import (
    Conversation,
    ConversationSummary,
    ImagePart,
    ImageRole,
    Role,
    TextPart,
    Turn,
    TurnError,
    Usage,
    frozen_metadata,
)
from chat.errors import ConversationMovedError
from storage import (
    BlobStore,
    ConversationNotFoundError,
    append_turn,
    create_conversation,
    delete_conversation,
    get_conversation,
    list_conversations,
    migrate,
    rename_conversation,
    save_image,
    session_scope,
)
from storage.models import ImageRow, PartRow, TurnRow
from storage.repository import (
    ConversationStamp,
    acquire_lease,
    append_to,
    append_turns,
    conversation_stamp,
    copy_conversation,
    create_share_link,
    delete_unreferenced_images,
    image_shas,
    revoke_share_link,
)

pytestmark = pytest.mark.both_databases

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OWNER = "owner-aaaaaaaaaaaaaaaa"
# Real thought signatures are opaque base64 blobs that can run to megabytes.
SIGNATURE = "Cq0BAY89a1" + "x/Y+z=" * (2 * 1024 * 1024 // 6)


def _store_image(session: Session, blobs: BlobStore, data: bytes) -> ImagePart:
    sha = blobs.put(data, "image/png").sha256
    save_image(
        session=session, sha256=sha, mime_type="image/png", width=4, height=3, size_bytes=len(data), now=NOW
    )
    return ImagePart(sha256=sha, mime_type="image/png")


def _user_turn(image: ImagePart) -> Turn:
    return Turn(role=Role.USER, parts=(TextPart("Make the sky violet 🌆, keep the cat"), image))


def _assistant_turn(image: ImagePart) -> Turn:
    return Turn(
        role=Role.ASSISTANT,
        parts=(
            TextPart("**Planning** the recolour…", thought=True),
            replace(image, provider_metadata=frozen_metadata({"gemini": {"thoughtSignature": SIGNATURE}})),
            TextPart(
                "Here is the violet sky.",
                provider_metadata=frozen_metadata({"gemini": {"thoughtSignature": "c2ln"}}),
            ),
        ),
        provider="gemini",
        model="gemini-3-pro-image-preview",
        finish_reason="STOP",
        options=frozen_metadata({"model": "gemini-3-pro-image-preview", "temperature": 0.4, "stop": ["x"]}),
        usage=Usage(input_tokens=1290, output_tokens=120, image_tokens=1290, cost_usd=0.16),
    )


def _count(session: Session, row_type: type) -> int:
    return session.scalar(select(func.count()).select_from(row_type)) or 0


def test_conversation_survives_a_restart_exactly(
    engine: Engine, open_engine: Callable[[], Engine], blobs: BlobStore
) -> None:
    with session_scope(engine) as session:
        create_conversation(
            session=session, conversation_id="c1", title="Violet sky", now=NOW, owner_id=OWNER
        )
        upload = _store_image(session, blobs, b"upload")
        output = _store_image(session, blobs, b"output")
        turns = [_user_turn(upload), _assistant_turn(output)]
        for i, turn in enumerate(turns):
            append_turn(session=session, conversation_id="c1", turn=turn, now=NOW + timedelta(seconds=i))
    engine.dispose()

    with session_scope(open_engine()) as session:
        loaded = get_conversation(session=session, conversation_id="c1")

    assert loaded == Conversation(
        id="c1",
        title="Violet sky",
        turns=tuple(replace(t, created_at=NOW + timedelta(seconds=i)) for i, t in enumerate(turns)),
        created_at=NOW,
        updated_at=NOW + timedelta(seconds=1),
    )
    assistant = loaded.turns[1]
    assert assistant.parts[1].provider_metadata["gemini"]["thoughtSignature"] == SIGNATURE
    assert [p.thought for p in assistant.parts] == [True, False, False]
    assert assistant.text() == "Here is the violet sky."
    assert loaded.latest_image() == assistant.parts[1]
    assert loaded.updated_at.tzinfo is UTC and assistant.created_at.tzinfo is UTC
    with pytest.raises(TypeError):
        assistant.options["model"] = "other"  # type: ignore[index]
    with pytest.raises(FrozenInstanceError):
        assistant.usage.input_tokens = 0  # type: ignore[misc,union-attr]


def test_error_turn_round_trips(engine: Engine) -> None:
    failed = Turn(
        role=Role.ASSISTANT,
        parts=(),
        provider="gemini",
        model="gemini-2.5-flash-image",
        error=TurnError(kind="RateLimited", message="Gemini is busy; try again in a minute."),
    )
    with session_scope(engine) as session:
        create_conversation(session=session, conversation_id="c1", title="t", now=NOW, owner_id=OWNER)
        append_turn(session=session, conversation_id="c1", turn=failed, now=NOW)

    with session_scope(engine) as session:
        loaded = get_conversation(session=session, conversation_id="c1")

    assert loaded is not None
    assert loaded.turns == (replace(failed, created_at=NOW),)


def test_append_assigns_increasing_seq_per_conversation(engine: Engine) -> None:
    with session_scope(engine) as session:
        for cid in ("a", "b"):
            create_conversation(session=session, conversation_id=cid, title=cid, now=NOW, owner_id=OWNER)
        seqs = [
            append_turn(
                session=session, conversation_id="a", turn=Turn(Role.USER, (TextPart(str(i)),)), now=NOW
            )
            for i in range(3)
        ]
        first_of_b = append_turn(session=session, conversation_id="b", turn=Turn(Role.USER, ()), now=NOW)

    with session_scope(engine) as session:
        loaded = get_conversation(session=session, conversation_id="a")

    assert seqs == [0, 1, 2]
    assert first_of_b == 0
    assert loaded is not None
    assert [t.text() for t in loaded.turns] == ["0", "1", "2"]


def test_failed_write_leaves_nothing_half_written(engine: Engine, blobs: BlobStore) -> None:
    with session_scope(engine) as session:
        create_conversation(session=session, conversation_id="c1", title="t", now=NOW, owner_id=OWNER)
        good = _store_image(session, blobs, b"good")
        append_turn(session=session, conversation_id="c1", turn=_user_turn(good), now=NOW)
    missing = ImagePart(sha256=hashlib.sha256(b"never saved").hexdigest(), mime_type="image/png")

    with pytest.raises(IntegrityError), session_scope(engine) as session:
        append_turn(
            session=session, conversation_id="c1", turn=_assistant_turn(missing), now=NOW + timedelta(1)
        )

    with session_scope(engine) as session:
        loaded = get_conversation(session=session, conversation_id="c1")
        assert (_count(session, TurnRow), _count(session, PartRow)) == (1, 2)
    assert loaded is not None
    assert loaded.updated_at == NOW
    assert len(loaded.turns) == 1


def test_a_conversation_loaded_to_be_shown_never_reads_the_signatures(
    engine: Engine, blobs: BlobStore
) -> None:
    with session_scope(engine) as session:
        create_conversation(session=session, conversation_id="c1", title="t", now=NOW, owner_id=OWNER)
        turns = [
            _user_turn(_store_image(session, blobs, b"upload")),
            _assistant_turn(_store_image(session, blobs, b"out")),
        ]
        for turn in turns:
            append_turn(session=session, conversation_id="c1", turn=turn, now=NOW)
    selected: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selected.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    with session_scope(engine) as session:
        shown = get_conversation(session=session, conversation_id="c1", replayable=False)
    event.remove(engine, "before_cursor_execute", record)
    with session_scope(engine) as session:
        whole = get_conversation(session=session, conversation_id="c1")

    assert shown is not None and whole is not None and not shown.replayable and whole.replayable
    assert not any("provider_metadata" in statement for statement in selected)
    assert all(not part.provider_metadata for turn in shown.turns for part in turn.parts)
    # Everything else is as stored: what the page shows is the same either way.
    strip = [tuple(replace(p, provider_metadata=frozen_metadata()) for p in t.parts) for t in whole.turns]
    assert [t.parts for t in shown.turns] == strip
    assert [t.text() for t in shown.turns] == [t.text() for t in whole.turns]


def test_get_conversation_uses_a_fixed_number_of_queries(engine: Engine) -> None:
    with session_scope(engine) as session:
        create_conversation(session=session, conversation_id="c1", title="t", now=NOW, owner_id=OWNER)
        for i in range(10):
            turn = Turn(Role.USER, (TextPart(f"{i}a"), TextPart(f"{i}b")))
            append_turn(session=session, conversation_id="c1", turn=turn, now=NOW)
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    with session_scope(engine) as session:
        loaded = get_conversation(session=session, conversation_id="c1")
    event.remove(engine, "before_cursor_execute", record)

    assert loaded is not None
    assert len(loaded.turns) == 10
    assert len(statements) == 3


def test_get_missing_conversation_returns_none(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert get_conversation(session=session, conversation_id="nope") is None


def test_append_to_missing_conversation_raises(engine: Engine) -> None:
    with pytest.raises(ConversationNotFoundError), session_scope(engine) as session:
        append_turn(session=session, conversation_id="nope", turn=Turn(Role.USER, ()), now=NOW)


def test_timestamps_are_stored_as_utc(engine: Engine) -> None:
    paris = timezone(timedelta(hours=1))
    with session_scope(engine) as session:
        created = create_conversation(
            session=session,
            conversation_id="c1",
            title="t",
            now=datetime(2026, 3, 1, 13, 0, tzinfo=paris),
            owner_id=OWNER,
        )
    with session_scope(engine) as session:
        loaded = get_conversation(session=session, conversation_id="c1")

    assert created.created_at == NOW and created.created_at.tzinfo is UTC
    assert loaded is not None and loaded.created_at == NOW and loaded.created_at.tzinfo is UTC


def test_naive_datetimes_and_oversized_values_are_rejected(engine: Engine) -> None:
    with pytest.raises(ValueError), session_scope(engine) as session:
        create_conversation(
            session=session, conversation_id="c1", title="t", now=datetime(2026, 3, 1), owner_id=OWNER
        )
    with pytest.raises(ValueError), session_scope(engine) as session:
        create_conversation(session=session, conversation_id="c1", title="t" * 201, now=NOW, owner_id=OWNER)
    with pytest.raises(ValueError), session_scope(engine) as session:
        create_conversation(session=session, conversation_id="c" * 33, title="t", now=NOW, owner_id=OWNER)


def test_save_image_is_idempotent(engine: Engine, blobs: BlobStore) -> None:
    with session_scope(engine) as session:
        first = _store_image(session, blobs, b"same")
    with session_scope(engine) as session:
        again = _store_image(session, blobs, b"same")
        assert _count(session, ImageRow) == 1
        assert session.get(ImageRow, first.sha256).size_bytes == 4
    assert again == first


def test_unreferenced_image_rows_go_once_old_and_storing_one_again_renews_it(engine: Engine) -> None:
    """A deleted conversation's image that a turn stores again is young again for the sweep."""
    later = NOW + timedelta(hours=2)
    with session_scope(engine) as session:
        conversation = create_conversation(
            session=session, conversation_id="c1", title="t", now=NOW, owner_id=OWNER
        )
        for data in (b"kept", b"unused", b"again"):
            _image_row(session, data, NOW)
        append_to(session=session, conversation=conversation, turn=_user_turn(_png(b"kept")), now=NOW)
    with session_scope(engine) as session:
        _image_row(session, b"again", later)

    with session_scope(engine) as session:
        assert delete_unreferenced_images(session=session, created_before=NOW) == 0  # nothing that old
        assert delete_unreferenced_images(session=session, created_before=later) == 1
        assert image_shas(session=session) == {_sha(b"kept"), _sha(b"again")}


def test_a_sweep_racing_a_new_reference_to_an_old_image_deletes_nothing(
    engine: Engine, open_engine: Callable[[], Engine], database: str
) -> None:
    """PostgreSQL: a part added by a transaction still open when the sweep looked makes the
    foreign key refuse the sweep's delete; the sweep deletes nothing and the turn commits."""
    if database != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    sweeper = open_engine()
    with session_scope(engine) as session:
        conversation = create_conversation(
            session=session, conversation_id="c1", title="t", now=NOW, owner_id=OWNER
        )
        _image_row(session, b"old", NOW)
    swept: list[int] = []

    def sweep() -> None:
        with session_scope(sweeper) as session:
            swept.append(delete_unreferenced_images(session=session, created_before=NOW + timedelta(hours=2)))

    with session_scope(engine) as session:  # e.g. a fork copying a part, without save_image
        append_to(session=session, conversation=conversation, turn=_user_turn(_png(b"old")), now=NOW)
        session.flush()
        racing = threading.Thread(target=sweep)
        racing.start()
        _wait_until_a_session_waits_for_a_lock(engine)
    racing.join(30)

    assert swept == [0]
    with session_scope(engine, read_only=True) as session:
        assert image_shas(session=session) == {_sha(b"old")}
        assert [t.text() for t in get_conversation(session=session, conversation_id="c1").turns] == [
            _user_turn(_png(b"old")).text()
        ]


def test_a_turn_storing_an_old_unused_image_again_keeps_it_from_a_sweep_meanwhile(
    engine: Engine, open_engine: Callable[[], Engine], database: str
) -> None:
    """PostgreSQL: storing the image again locks its row until the turn commits, so a sweep
    deleting it at that moment waits, then finds it young: the turn's part is not refused."""
    if database != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    sweeper = open_engine()
    later = NOW + timedelta(hours=3)
    with session_scope(engine) as session:
        conversation = create_conversation(
            session=session, conversation_id="c1", title="t", now=NOW, owner_id=OWNER
        )
        _image_row(session, b"old", NOW)
    swept: list[int] = []

    def sweep() -> None:
        with session_scope(sweeper) as session:
            swept.append(
                delete_unreferenced_images(session=session, created_before=later - timedelta(hours=1))
            )

    with session_scope(engine) as session:
        _image_row(session, b"old", later)
        racing = threading.Thread(target=sweep)
        racing.start()
        _wait_until_a_session_waits_for_a_lock(engine, unless=lambda: bool(swept))
        append_to(session=session, conversation=conversation, turn=_user_turn(_png(b"old")), now=later)
    racing.join(30)

    assert swept == [0]
    with session_scope(engine, read_only=True) as session:
        assert image_shas(session=session) == {_sha(b"old")}


def _wait_until_a_session_waits_for_a_lock(
    engine: Engine, unless: Callable[[], bool] = lambda: False
) -> None:
    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        query = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        while not conn.execute(query).scalar() and not unless():
            assert time.monotonic() < deadline, "the sweep never waited for the turn's lock"
            conn.rollback()
            time.sleep(0.01)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _image_row(session: Session, data: bytes, now: datetime) -> None:
    """The image's row only (these tests sweep rows; no file is needed)."""
    save_image(
        session=session,
        sha256=_sha(data),
        mime_type="image/png",
        width=1,
        height=1,
        size_bytes=len(data),
        now=now,
    )


def _png(data: bytes) -> ImagePart:
    return ImagePart(sha256=_sha(data), mime_type="image/png")


def test_save_image_rejects_malformed_sha(engine: Engine) -> None:
    with pytest.raises(ValueError), session_scope(engine) as session:
        save_image(
            session=session, sha256="../x", mime_type="image/png", width=1, height=1, size_bytes=1, now=NOW
        )


def test_list_conversations_newest_first_with_turn_counts(engine: Engine) -> None:
    with session_scope(engine) as session:
        for i, cid in enumerate(["old", "mid", "new"]):
            create_conversation(
                session=session,
                conversation_id=cid,
                title=cid.title(),
                now=NOW + timedelta(i),
                owner_id=OWNER,
            )
        append_turn(session=session, conversation_id="old", turn=Turn(Role.USER, ()), now=NOW + timedelta(5))
        append_turn(session=session, conversation_id="old", turn=Turn(Role.USER, ()), now=NOW + timedelta(6))

    with session_scope(engine) as session:
        listed = list_conversations(session=session, owner_id=OWNER)
        limited = list_conversations(session=session, owner_id=OWNER, limit=2)

    assert listed == [
        ConversationSummary(id="old", title="Old", updated_at=NOW + timedelta(6), turn_count=2),
        ConversationSummary(id="new", title="New", updated_at=NOW + timedelta(2), turn_count=0),
        ConversationSummary(id="mid", title="Mid", updated_at=NOW + timedelta(1), turn_count=0),
    ]
    assert [s.id for s in limited] == ["old", "new"]
    assert listed[0].updated_at.tzinfo is UTC


def test_rename_changes_title_and_bumps_updated_at(engine: Engine) -> None:
    with session_scope(engine) as session:
        create_conversation(session=session, conversation_id="c1", title="Untitled", now=NOW, owner_id=OWNER)
    with session_scope(engine) as session:
        rename_conversation(session=session, conversation_id="c1", title="Cats", now=NOW + timedelta(1))
    with session_scope(engine) as session:
        loaded = get_conversation(session=session, conversation_id="c1")
    with pytest.raises(ConversationNotFoundError), session_scope(engine) as session:
        rename_conversation(session=session, conversation_id="nope", title="x", now=NOW)

    assert loaded is not None
    assert (loaded.title, loaded.created_at, loaded.updated_at) == ("Cats", NOW, NOW + timedelta(1))


def test_delete_cascades_to_turns_and_parts_but_keeps_images(engine: Engine, blobs: BlobStore) -> None:
    with session_scope(engine) as session:
        for cid in ("gone", "kept"):
            create_conversation(session=session, conversation_id=cid, title=cid, now=NOW, owner_id=OWNER)
        image = _store_image(session, blobs, b"img")
        append_turn(session=session, conversation_id="gone", turn=_user_turn(image), now=NOW)
        append_turn(session=session, conversation_id="gone", turn=_assistant_turn(image), now=NOW)
        append_turn(session=session, conversation_id="kept", turn=_user_turn(image), now=NOW)

    with session_scope(engine) as session:
        deleted = delete_conversation(session=session, conversation_id="gone")
    with session_scope(engine) as session:
        deleted_again = delete_conversation(session=session, conversation_id="gone")
        counts = (_count(session, TurnRow), _count(session, PartRow), _count(session, ImageRow))
        gone = get_conversation(session=session, conversation_id="gone")
        kept = get_conversation(session=session, conversation_id="kept")

    assert (deleted, deleted_again) == (True, False)
    assert gone is None
    assert counts == (1, 2, 1)
    assert kept is not None and kept.turns[0].images() == [image]


def test_append_to_returns_what_a_reload_returns(engine: Engine, blobs: BlobStore) -> None:
    with session_scope(engine) as session:
        create_conversation(
            session=session, conversation_id="c1", title="Violet sky", now=NOW, owner_id=OWNER
        )
        upload = _store_image(session, blobs, b"upload")
        output = _store_image(session, blobs, b"output")
        conversation = get_conversation(session=session, conversation_id="c1")
        assert conversation is not None
        for i, turn in enumerate([_user_turn(upload), _assistant_turn(output)]):
            now = NOW + timedelta(seconds=i + 1)
            conversation = append_to(session=session, conversation=conversation, turn=turn, now=now)
    with session_scope(engine, read_only=True) as session:
        assert get_conversation(session=session, conversation_id="c1") == conversation
    assert len(conversation.turns) == 2 and conversation.updated_at == NOW + timedelta(seconds=2)


def test_append_turns_stores_what_one_by_one_appends_store(engine: Engine, blobs: BlobStore) -> None:
    """The bulk path of imports and forks: same seqs, same part order, same metadata, after what was there."""
    with session_scope(engine) as session:
        upload = _store_image(session, blobs, b"upload")
        output = _store_image(session, blobs, b"output")
        turns = [_user_turn(upload), _assistant_turn(output)] * 4
        for cid in ("one-by-one", "bulk"):
            create_conversation(session=session, conversation_id=cid, title="t", now=NOW, owner_id=OWNER)
            append_turn(session=session, conversation_id=cid, turn=turns[0], now=NOW)
        for turn in turns:
            append_turn(session=session, conversation_id="one-by-one", turn=turn, now=NOW)
        append_turns(session=session, conversation_id="bulk", turns=turns, now=NOW)
        append_turns(session=session, conversation_id="bulk", turns=[], now=NOW)
    with session_scope(engine, read_only=True) as session:
        one = get_conversation(session=session, conversation_id="one-by-one")
        bulk = get_conversation(session=session, conversation_id="bulk")
    assert one is not None and bulk is not None
    assert bulk.turns == one.turns and len(bulk.turns) == 9
    with session_scope(engine) as session, pytest.raises(ConversationNotFoundError):
        append_turns(session=session, conversation_id="gone", turns=turns, now=NOW)


def test_append_to_refuses_when_the_stored_conversation_moved_on(engine: Engine, blobs: BlobStore) -> None:
    """Another writer added a turn: a turn for the stale copy would land after it, answering the
    wrong message, so nothing is written (the writer lost its lease; the holder's turn stands)."""
    with session_scope(engine) as session:
        create_conversation(
            session=session, conversation_id="c1", title="Violet sky", now=NOW, owner_id=OWNER
        )
        stale = get_conversation(session=session, conversation_id="c1")
        upload = _store_image(session, blobs, b"upload")
    with session_scope(engine) as session:
        append_turn(session=session, conversation_id="c1", turn=_user_turn(upload), now=NOW)
    assert stale is not None
    with session_scope(engine) as session, pytest.raises(ConversationMovedError):
        append_to(session=session, conversation=stale, turn=_user_turn(upload), now=NOW)
    with session_scope(engine) as session:
        current = get_conversation(session=session, conversation_id="c1")
        assert current is not None and len(current.turns) == 1  # the refused turn left nothing
        appended = append_to(session=session, conversation=current, turn=_user_turn(upload), now=NOW)
    with session_scope(engine, read_only=True) as session:
        assert get_conversation(session=session, conversation_id="c1") == appended
    assert len(appended.turns) == 2


def test_append_to_a_deleted_conversation_raises(engine: Engine) -> None:
    with session_scope(engine) as session:
        create_conversation(session=session, conversation_id="c1", title="t", now=NOW, owner_id=OWNER)
        stale = get_conversation(session=session, conversation_id="c1")
    with session_scope(engine) as session:
        delete_conversation(session=session, conversation_id="c1")
    assert stale is not None
    with pytest.raises(ConversationNotFoundError), session_scope(engine) as session:
        append_to(
            session=session, conversation=stale, turn=Turn(role=Role.USER, parts=(TextPart("x"),)), now=NOW
        )


def test_the_listed_thumbnail_is_the_image_the_chat_shows_last(engine: Engine, blobs: BlobStore) -> None:
    """After a painted turn whose answer failed, the chat shows the last answer: so does the
    list (never the magenta marked copy or the mask), for the conversation and for its fork."""
    with session_scope(engine) as session:
        photo, answer, marked, mask = (_store_image(session, blobs, bytes([n]) * 8) for n in range(4))
        conversation = create_conversation(
            session=session, conversation_id="c1", title="Cat", now=NOW, owner_id=OWNER
        )
        painted = Turn(
            Role.USER,
            (
                replace(marked, role=ImageRole.MARKED),
                replace(mask, role=ImageRole.MASK),
                TextPart("make this part red"),
            ),
        )
        failed = Turn(Role.ASSISTANT, (), error=TurnError("unavailable", "503"))
        for turn in (_user_turn(photo), _assistant_turn(answer), painted, failed):
            conversation = append_to(session=session, conversation=conversation, turn=turn, now=NOW)
        copy_conversation(
            session=session, source_id="c1", new_id="fork", title="Fork", owner_id=OWNER, now=NOW
        )
    shown = conversation.latest_image()
    assert shown is not None and shown.sha256 == answer.sha256
    with session_scope(engine, read_only=True) as session:
        listed = list_conversations(session=session, owner_id=OWNER)
    assert {s.id: s.thumbnail for s in listed} == {
        "c1": ImagePart(answer.sha256, "image/png"),
        "fork": ImagePart(answer.sha256, "image/png"),
    }


def test_listing_conversations_is_one_query(engine: Engine, blobs: BlobStore) -> None:
    with session_scope(engine) as session:
        image = _store_image(session, blobs, b"x" * 8)
        for cid in ("a", "b", "c"):
            create_conversation(session=session, conversation_id=cid, title=cid, now=NOW, owner_id=OWNER)
            append_turn(session=session, conversation_id=cid, turn=_assistant_turn(image), now=NOW)
    statements: list[str] = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listen)
    try:
        with session_scope(engine, read_only=True) as session:
            listed = list_conversations(session=session, owner_id=OWNER)
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    assert [s.thumbnail for s in listed] == [ImagePart(image.sha256, "image/png")] * 3
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1, statements


def test_two_hundred_concurrent_appends_from_two_engines_are_all_stored_in_order(
    open_engine: Callable[[], Engine],
) -> None:
    """Two replicas appending to one conversation at once: every append gets its own number (the
    conversation row's count, taken under its lock), none fails on the unique (conversation, seq)."""
    engines = [open_engine(), open_engine()]
    migrate(engines[0])
    with session_scope(engines[0]) as session:
        create_conversation(session=session, conversation_id="busy", title="t", now=NOW, owner_id=OWNER)

    def append(n: int) -> int:
        with session_scope(engines[n % 2]) as session:
            return append_turn(
                session=session, conversation_id="busy", turn=Turn(Role.USER, (TextPart(f"m{n}"),)), now=NOW
            )

    with ThreadPoolExecutor(16) as pool:
        seqs = list(pool.map(append, range(200)))

    assert sorted(seqs) == list(range(200))
    with session_scope(engines[1], read_only=True) as session:
        stored = get_conversation(session=session, conversation_id="busy")
    assert stored is not None and len(stored.turns) == 200
    assert sorted(t.text() for t in stored.turns) == sorted(f"m{n}" for n in range(200))


def test_a_conversation_stamp_is_one_select_of_its_version_lease_and_the_callers_link(engine: Engine) -> None:
    selects: list[str] = []

    def count(_conn, _cursor, statement: str, *_args) -> None:
        selects.extend([statement] if statement.lstrip().upper().startswith("SELECT") else [])

    with session_scope(engine) as session:
        for name in ("watched", "other"):
            create_conversation(session=session, conversation_id=name, title=name, now=NOW, owner_id=OWNER)
        create_share_link(session=session, conversation_id="watched", token="t-watched", kind="view", now=NOW)
        create_share_link(session=session, conversation_id="other", token="t-other", kind="continue", now=NOW)
        append_turn(
            session=session, conversation_id="watched", turn=Turn(Role.USER, (TextPart("hi"),)), now=NOW
        )
        acquire_lease(
            session=session,
            conversation_id="watched",
            holder="h",
            now=NOW,
            expires_at=NOW + timedelta(seconds=30),
        )
    event.listen(engine, "before_cursor_execute", count)
    try:
        with session_scope(engine, read_only=True) as session:
            stamp = conversation_stamp(
                session=session, conversation_id="watched", share_token="t-watched", now=NOW
            )
            assert selects and len(selects) == 1
            assert stamp == ConversationStamp(OWNER, 1, 0, True, "view")
            later = NOW + timedelta(seconds=31)  # the lease expired: its replica died
            assert conversation_stamp(
                session=session, conversation_id="watched", share_token="t-other", now=later
            ) == ConversationStamp(OWNER, 1, 0, False, None)  # another conversation's link opens nothing here
            assert (
                conversation_stamp(session=session, conversation_id="gone", share_token=None, now=NOW) is None
            )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    with session_scope(engine) as session:
        revoke_share_link(session=session, conversation_id="watched", token="t-watched", now=NOW)
        stamp = conversation_stamp(
            session=session, conversation_id="watched", share_token="t-watched", now=NOW
        )
        assert stamp is not None and stamp.link_kind is None
