"""Every query the app makes, speaking domain types in and out; rows stay in here.

Functions take a keyword-only ``session`` and only ``flush``: the caller's ``session_scope``
owns the transaction, so a turn and its parts (or any larger unit of work) commit together or
not at all.

Replay invariant (see ``chat.domain``): ``get_conversation`` returns exactly what
``append_turn`` was given - same turns, same part order, provider metadata verbatim - because
that is what a provider adapter sends back to the model.

Appending numbers turns from the conversation row's ``turn_count``, counted up by the same
statement that stamps its time: on SQLite every write transaction holds the database's write
lock, on PostgreSQL that UPDATE holds the row's lock until commit, so two appends to one
conversation take turns and never draw the same ``seq`` (the unique constraint would refuse it).
``turn_count`` is also the conversation's version: a copy holding that many turns is current.

Leases (``conversation_lease``, one row per turn in flight) are taken, renewed and released
with one statement each, never read first: which of two replicas got a lease is decided by the
database, in the statement that takes it. Times are the caller's, so tests give them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, literal, null, update
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlalchemy.orm.util import identity_key
from sqlmodel import Session, SQLModel, UTCDateTime, col, select

from chat.domain import (
    Attempt,
    Conversation,
    ConversationSummary,
    ImagePart,
    ImageRole,
    Part,
    Role,
    ShareLink,
    TextPart,
    Turn,
    TurnError,
    TurnStatus,
    Usage,
    answers_to,
    aware_utc,
    frozen_metadata,
    plain_data,
)
from chat.domain import pick_answer as pick_domain
from chat.errors import ConversationMovedError, ConversationNotFoundError
from storage.blobs import validate_sha256
from storage.models import (
    CONVERSATION_ID_MAX_LENGTH,
    OWNER_ID_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    ConversationLeaseRow,
    ConversationRow,
    DailySpendRow,
    ImageRow,
    PartRow,
    RateEventRow,
    ShareLinkRow,
    SpendReservationRow,
    TurnRow,
)

__all__ = [
    "BucketCount",
    "ConversationMovedError",
    "ConversationStamp",
    "ConversationNotFoundError",
    "acquire_lease",
    "add_events",
    "add_spend",
    "append_all_to",
    "append_to",
    "append_turn",
    "append_turns",
    "claim_conversation",
    "conversation_owner",
    "conversation_stamp",
    "count_owned",
    "copy_conversation",
    "count_events",
    "create_conversation",
    "create_share_link",
    "delete_conversation",
    "delete_unreferenced_images",
    "drop_reservation",
    "get_conversation",
    "image_shas",
    "is_share_token",
    "list_conversations",
    "move_conversations",
    "pick_answer",
    "live_lease_count",
    "live_leases",
    "release_lease",
    "rename_conversation",
    "renew_lease",
    "reserve_spend",
    "resolve_share_link",
    "revoke_share_link",
    "save_image",
    "serialize_admissions",
    "share_links",
    "spend_with_reservations",
    "spent_on",
    "turn_count",
    "turn_for_request",
    "version",
]

_TEXT = "text"
_IMAGE = "image"


def create_conversation(
    *, session: Session, conversation_id: str, title: str, now: datetime, owner_id: str
) -> Conversation:
    """A new, empty conversation; every conversation has an owner (an unowned row is anyone's)."""
    if not conversation_id or len(conversation_id) > CONVERSATION_ID_MAX_LENGTH:
        raise ValueError(f"conversation id must be 1-{CONVERSATION_ID_MAX_LENGTH} characters")
    _check_owner(owner_id)
    now = aware_utc(now)
    session.add(
        ConversationRow(
            id=conversation_id, title=_checked_title(title), created_at=now, updated_at=now, owner_id=owner_id
        )
    )
    session.flush()
    return Conversation(id=conversation_id, title=title, created_at=now, updated_at=now)


def conversation_owner(*, session: Session, conversation_id: str) -> str | None:
    """The owner id (None for conversations made before owners existed)."""
    row = session.get(ConversationRow, conversation_id)
    if row is None:
        raise ConversationNotFoundError(conversation_id)
    return row.owner_id


def get_conversation(
    *, session: Session, conversation_id: str, replayable: bool = True
) -> Conversation | None:
    """The whole conversation in two queries after the row itself: its turns, then all their parts.

    ``replayable=False`` is for showing it: the parts come without their provider metadata, which
    is never shown and can be MBs (a Gemini 3 thought signature is reported at 1-2 MB a part:
    ten answered turns made a page open read and parse ~20 MB, ~55 ms of CPU on SQLite). Such a
    conversation says so (``Conversation.replayable``) and the turn writer refuses to append to it.
    """
    row = session.get(ConversationRow, conversation_id)
    if row is None:
        return None
    turn_rows = session.exec(
        select(TurnRow).where(TurnRow.conversation_id == conversation_id).order_by(col(TurnRow.seq))
    ).all()
    parts_by_turn: dict[int, list[Part]] = defaultdict(list)
    query = (
        select(PartRow)
        .join(TurnRow, col(PartRow.turn_id) == col(TurnRow.id))
        .where(TurnRow.conversation_id == conversation_id)
        .order_by(col(PartRow.turn_id), col(PartRow.position))
    )
    if not replayable:
        query = query.options(defer(PartRow.provider_metadata, raiseload=True))  # type: ignore[arg-type]
    for part_row in session.exec(query):
        parts_by_turn[part_row.turn_id].append(_part_from_row(part_row, with_metadata=replayable))
    turns = tuple(_turn_from_row(t, parts_by_turn[t.id]) for t in turn_rows if t.id is not None)
    return Conversation(
        id=row.id,
        title=row.title,
        turns=turns,
        created_at=row.created_at,
        updated_at=row.updated_at,
        replayable=replayable,
        revision=row.revision,
    )


def append_turn(*, session: Session, conversation_id: str, turn: Turn, now: datetime) -> int:
    """Store ``turn`` at the end of the conversation and return its ``seq`` (0 for the first).

    Every ImagePart must already have an image row (``save_image``); the foreign key rejects
    it otherwise. ``created_at`` is the turn's own if set, else ``now``.
    """
    _, (row,) = _add_turns(session, conversation_id, [turn], now)
    return int(row["seq"])


def append_to(*, session: Session, conversation: Conversation, turn: Turn, now: datetime) -> Conversation:
    """Append ``turn`` right after the turns of ``conversation`` and return the conversation as
    ``get_conversation`` would, without reloading it (a reload costs a query over every turn and
    part, more with every turn, on every write).

    ``conversation`` must be the stored one, checked under its lease: if the stored conversation
    holds other turns (a writer that lost its lease, while another replica appended), nothing is
    written and ConversationMovedError says so, rather than the turn landing after someone else's.
    """
    return append_all_to(session=session, conversation=conversation, turns=[turn], now=now)


def append_all_to(
    *, session: Session, conversation: Conversation, turns: Sequence[Turn], now: datetime
) -> Conversation:
    """``append_to`` for several turns stored together (the variants of one answer)."""
    stored, rows = _add_turns(session, conversation.id, turns, now, after=len(conversation.turns))
    added = tuple(
        _turn_from_row(TurnRow(**row), list(turn.parts)) for row, turn in zip(rows, turns, strict=True)
    )
    return Conversation(
        id=conversation.id,
        title=stored.title,
        turns=(*conversation.turns, *added),
        created_at=stored.created_at,
        updated_at=stored.updated_at,
        revision=stored.revision,
    )


def append_turns(*, session: Session, conversation_id: str, turns: Sequence[Turn], now: datetime) -> None:
    """Store many turns at the end of a conversation in a few statements (imports and forks).

    One INSERT batch for the turns, one for all their parts: a 1,000-turn import holds the
    write lock for a fraction of the time a turn-by-turn loop takes.
    """
    if turns:
        _add_turns(session, conversation_id, turns, now)


def pick_answer(
    *, session: Session, conversation: Conversation, index: int, revision: int | None, now: datetime
) -> Conversation:
    """The answer at turn ``index`` picked among its message's answers (``chat.domain.pick_answer``),
    and the conversation's revision counted up, in one transaction; the conversation as it is then.

    ``conversation`` is the stored one, read under the lease with its ``revision`` (ConversationMovedError
    if another write came between: the UPDATE of the conversation row checks it and takes its lock).
    ValueError if that turn is no answer that succeeded.
    """
    turns = pick_domain(conversation.turns, index)
    table = _table(ConversationRow)
    update = table.update().where(
        table.c.id == conversation.id, table.c.turn_count == len(conversation.turns)
    )
    if revision is not None:
        update = update.where(table.c.revision == revision)
    stored = session.execute(
        update.values(revision=table.c.revision + 1, updated_at=aware_utc(now)).returning(table.c.revision)
    ).scalar_one_or_none()
    if stored is None:
        raise ConversationMovedError(conversation.id)
    _forget_loaded(session, conversation.id)
    turn = _table(TurnRow)
    group = answers_to(conversation.turns, index)
    session.execute(
        turn.update()
        .where(
            turn.c.conversation_id == conversation.id,
            turn.c.seq >= group.start,
            turn.c.seq < group.stop,
            turn.c.status == TurnStatus.OK.value,
        )
        .values(picked=turn.c.seq == index)
    )
    return replace(conversation, turns=turns, revision=stored, updated_at=aware_utc(now))


@dataclass(frozen=True)
class _Appended:
    """The conversation row as the append left it."""

    title: str
    created_at: datetime
    updated_at: datetime
    revision: int


def _add_turns(
    session: Session, conversation_id: str, turns: Sequence[Turn], now: datetime, *, after: int | None = None
) -> tuple[_Appended, list[dict[str, Any]]]:
    """Three statements, whatever the number of turns: the conversation row, then the turns'
    rows, then all their parts; returned with the turns' row values (with their ids).

    The first is one ``UPDATE … RETURNING`` of the conversation: its time, its thumbnail, and
    its turn count, which numbers the new turns. Where the database has row locks (PostgreSQL),
    it also holds that row until commit, so a second writer of the same conversation waits
    and then numbers after these turns. With ``after``, it updates only a conversation of that
    many turns (ConversationMovedError otherwise). Rows are written as Core statements: the
    ORM's unit of work cost ~4 ms a turn here (bench/RESULTS.md, issue 12).
    """
    now = aware_utc(now)
    conversation = _table(ConversationRow)
    values: dict[str, Any] = {"updated_at": now, "turn_count": conversation.c.turn_count + len(turns)}
    # The thumbnail is the image the chat shows last, kept on the row so "My conversations" never
    # reads parts: only turns appended with a shown image change it.
    latest = Conversation(conversation_id, "", tuple(turns)).latest_image()
    if latest is not None:
        values |= {"thumbnail_sha256": latest.sha256, "thumbnail_mime_type": latest.mime_type}
    update = conversation.update().where(conversation.c.id == conversation_id)
    if after is not None:
        update = update.where(conversation.c.turn_count == after)
    stored = session.execute(
        update.values(values).returning(
            conversation.c.title,
            conversation.c.created_at,
            conversation.c.turn_count,
            conversation.c.revision,
        )
    ).one_or_none()
    if stored is None:
        if after is not None and turn_count(session=session, conversation_id=conversation_id) is not None:
            raise ConversationMovedError(conversation_id)
        raise ConversationNotFoundError(conversation_id)
    _forget_loaded(session, conversation_id)
    first = stored.turn_count - len(turns)
    rows = [_turn_values(conversation_id, first + n, turn, now) for n, turn in enumerate(turns)]
    turn_table = _table(TurnRow)
    ids = session.execute(
        turn_table.insert().returning(turn_table.c.id, sort_by_parameter_order=True), rows
    ).scalars()
    for row, turn_id in zip(rows, ids, strict=True):
        row["id"] = turn_id
    parts = [
        _part_values(row["id"], position, part)
        for row, turn in zip(rows, turns, strict=True)
        for position, part in enumerate(turn.parts)
    ]
    if parts:
        session.execute(_table(PartRow).insert(), parts)
    return _Appended(stored.title, stored.created_at, now, stored.revision), rows


def _table(model: type[SQLModel]) -> Table:
    """A model's table, for Core statements."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]  # set by SQLModel for table=True


def _forget_loaded(session: Session, conversation_id: str) -> None:
    """Expire the session's copy of the conversation row, if it holds one: the UPDATE above went
    around the ORM, and a later ``session.get`` must not hand back the old time and count."""
    loaded = session.identity_map.get(identity_key(ConversationRow, conversation_id))
    if loaded is not None:
        session.expire(loaded)


def _turn_values(conversation_id: str, seq: int, turn: Turn, now: datetime) -> dict[str, Any]:
    """A turn's row as the values of an INSERT (no id: the database gives it)."""
    return {
        "conversation_id": conversation_id,
        "seq": seq,
        "role": turn.role.value,
        "status": turn.status.value,
        "provider": turn.provider,
        "model": turn.model,
        "finish_reason": turn.finish_reason,
        "error_kind": turn.error.kind if turn.error else None,
        "error_message": turn.error.message if turn.error else None,
        "notice": turn.notice,
        "options": plain_data(turn.options),
        "usage": turn.usage.to_dict() if turn.usage else {},
        "attempts": [attempt.to_dict() for attempt in turn.attempts],
        "request_hash": turn.request_hash,
        "created_at": now if turn.created_at is None else aware_utc(turn.created_at),
        "variant": turn.variant,
        "picked": turn.picked,
    }


def version(*, session: Session, conversation_id: str) -> tuple[int, int] | None:
    """The conversation's turn count and revision (a copy with both is current), or None if there
    is no such conversation; one SELECT."""
    conversation = _table(ConversationRow)
    row = session.execute(
        core_select(conversation.c.turn_count, conversation.c.revision).where(
            conversation.c.id == conversation_id
        )
    ).one_or_none()
    return None if row is None else (row.turn_count, row.revision)


@dataclass(frozen=True)
class ConversationStamp:
    """What a page watching a conversation compares every second: its version (turn count and
    revision) and whether a turn of it runs on some replica (a live lease), with what access is
    decided from (its owner, and the kind of the caller's share link if that opens this one)."""

    owner_id: str | None
    turn_count: int
    revision: int
    leased: bool
    link_kind: str | None


def conversation_stamp(
    *, session: Session, conversation_id: str, share_token: str | None, now: datetime
) -> ConversationStamp | None:
    """The conversation's stamp, or None if there is no such conversation: one SELECT of its row
    with two correlated subqueries (the lease, the link), no turn rows, no JSON."""
    conversation = _table(ConversationRow)
    lease = _table(ConversationLeaseRow)
    link = _table(ShareLinkRow)
    leased = (
        core_select(lease.c.conversation_id)
        .where(lease.c.conversation_id == conversation.c.id, lease.c.expires_at > aware_utc(now))
        .exists()
    )
    kind = (
        core_select(link.c.kind)
        .where(
            link.c.token == share_token,
            link.c.conversation_id == conversation.c.id,
            link.c.revoked_at.is_(None),
        )
        .scalar_subquery()
        if share_token
        else null()
    )
    row = session.execute(
        core_select(
            conversation.c.owner_id,
            conversation.c.turn_count,
            conversation.c.revision,
            leased.label("leased"),
            kind.label("link_kind"),
        ).where(conversation.c.id == conversation_id)
    ).one_or_none()
    if row is None:
        return None
    return ConversationStamp(row.owner_id, row.turn_count, row.revision, bool(row.leased), row.link_kind)


def turn_count(*, session: Session, conversation_id: str) -> int | None:
    """How many turns the conversation holds (its version: a copy with as many is current), or
    None if there is no such conversation; one single-column SELECT."""
    conversation = _table(ConversationRow)
    return session.execute(
        core_select(conversation.c.turn_count).where(conversation.c.id == conversation_id)
    ).scalar_one_or_none()


def acquire_lease(
    *, session: Session, conversation_id: str, holder: str, now: datetime, expires_at: datetime
) -> bool:
    """Take the conversation's lease for ``holder`` until ``expires_at``, if no live one is there.

    One ``INSERT … ON CONFLICT DO UPDATE … WHERE expired … RETURNING``: a free conversation's row
    is inserted, an expired one is taken over, a live one is left alone (no row comes back). Two
    replicas racing both run it, and the database lets exactly one through. ConversationNotFoundError
    if there is no such conversation (the row is inserted only beside its conversation).
    """
    lease = _table(ConversationLeaseRow)
    conversation = _table(ConversationRow)
    values = core_select(
        conversation.c.id,
        literal(holder, lease.c.holder.type),
        literal(aware_utc(expires_at), UTCDateTime()),
    ).where(conversation.c.id == conversation_id)
    insert = _insert(session, ConversationLeaseRow).from_select(
        ["conversation_id", "holder", "expires_at"], values
    )
    taken = session.execute(
        insert.on_conflict_do_update(
            index_elements=["conversation_id"],
            set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
            where=lease.c.expires_at <= aware_utc(now),
        ).returning(lease.c.holder)
    ).scalar_one_or_none()
    if taken is None and turn_count(session=session, conversation_id=conversation_id) is None:
        raise ConversationNotFoundError(conversation_id)
    return taken == holder


def renew_lease(*, session: Session, conversation_id: str, holder: str, expires_at: datetime) -> bool:
    """Move ``holder``'s lease on to ``expires_at``; False if the lease is no longer theirs."""
    lease = _table(ConversationLeaseRow)
    renewed = session.execute(
        lease.update()
        .where(lease.c.conversation_id == conversation_id, lease.c.holder == holder)
        .values(expires_at=aware_utc(expires_at))
    )
    return bool(cast(CursorResult[Any], renewed).rowcount)


def release_lease(*, session: Session, conversation_id: str, holder: str) -> bool:
    """Give ``holder``'s lease up; False if it was not theirs any more (taken over after expiry)."""
    lease = _table(ConversationLeaseRow)
    released = session.execute(
        lease.delete().where(lease.c.conversation_id == conversation_id, lease.c.holder == holder)
    )
    return bool(cast(CursorResult[Any], released).rowcount)


def live_leases(*, session: Session, conversation_ids: Sequence[str], now: datetime) -> set[str]:
    """Which of ``conversation_ids`` have a turn in flight on some replica (a lease not expired)."""
    if not conversation_ids:
        return set()
    lease = _table(ConversationLeaseRow)
    rows = session.execute(
        core_select(lease.c.conversation_id).where(
            lease.c.conversation_id.in_(list(conversation_ids)), lease.c.expires_at > aware_utc(now)
        )
    )
    return set(rows.scalars())


def live_lease_count(*, session: Session, now: datetime) -> int:
    """How many turns are in flight on all replicas together (for the health check)."""
    lease = _table(ConversationLeaseRow)
    count = core_select(func.count()).select_from(lease).where(lease.c.expires_at > aware_utc(now))
    return int(session.execute(count).scalar_one())


def save_image(
    *,
    session: Session,
    sha256: str,
    mime_type: str,
    width: int,
    height: int,
    size_bytes: int,
    now: datetime,
) -> None:
    """Record an image stored in the BlobStore; a second call for the same sha only renews ``created_at``.

    One statement (``INSERT … ON CONFLICT DO UPDATE``): two sessions storing the same image at
    once both succeed, and neither reads first. Renewing ``created_at`` makes an image a turn
    stores again young for the orphan sweep (``delete_unreferenced_images``); on PostgreSQL it
    also locks the row until the turn commits, so a sweep deleting it at that moment waits,
    then finds it young and keeps it.
    """
    validate_sha256(sha256)
    values = {
        "sha256": sha256,
        "mime_type": mime_type,
        "width": width,
        "height": height,
        "size_bytes": size_bytes,
        "created_at": aware_utc(now),
    }
    insert = _insert(session, ImageRow).values(values)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["sha256"], set_={"created_at": insert.excluded.created_at}
        )
    )


def list_conversations(
    *, session: Session, owner_id: str, query: str = "", limit: int = 50
) -> list[ConversationSummary]:
    """One owner's conversations, most recently updated first, each with its number of turns and
    the image its chat shows last (both kept on the row); ``query`` matches titles. One query.
    There is no "everyone's": the owner is required."""
    _check_owner(owner_id)
    statement = (
        select(ConversationRow)
        .order_by(col(ConversationRow.updated_at).desc(), col(ConversationRow.id))
        .where(ConversationRow.owner_id == owner_id)
        .limit(limit)
    )
    if query.strip():
        statement = statement.where(
            col(ConversationRow.title).ilike(f"%{_escape_like(query.strip())}%", escape="\\")
        )
    return [
        ConversationSummary(
            id=row.id,
            title=row.title,
            updated_at=row.updated_at,
            turn_count=row.turn_count,
            thumbnail=_thumbnail(row),
        )
        for row in session.exec(statement).all()
    ]


def _thumbnail(row: ConversationRow) -> ImagePart | None:
    if row.thumbnail_sha256 is None or row.thumbnail_mime_type is None:
        return None
    return ImagePart(row.thumbnail_sha256, row.thumbnail_mime_type)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def turn_for_request(*, session: Session, request_hash: str) -> Turn | None:
    """The newest answered turn that was made by exactly this request (for the response cache)."""
    row = session.exec(
        select(TurnRow)
        .where(TurnRow.request_hash == request_hash, TurnRow.status == TurnStatus.OK.value)
        .order_by(col(TurnRow.id).desc())
        .limit(1)
    ).first()
    if row is None or row.id is None:
        return None
    parts = session.exec(
        select(PartRow).where(PartRow.turn_id == row.id).order_by(col(PartRow.position))
    ).all()
    return _turn_from_row(row, [_part_from_row(p) for p in parts])


def image_shas(*, session: Session) -> set[str]:
    return set(session.exec(select(ImageRow.sha256)).all())


def hold_missing_image(*, session: Session, sha256: str) -> bool:
    """Lock the row of an image that has none (for the sweep, about to delete its object); False
    if it has one, and then nothing changes.

    A placeholder row is inserted, never committed (``release_missing_image`` deletes it in the
    same transaction): meanwhile a turn storing this image (``save_image``) waits on PostgreSQL
    and on SQLite alike, and finds the object gone once it may go on. An image whose row was
    committed first is left alone.
    """
    validate_sha256(sha256)
    values = {
        "sha256": sha256,
        "mime_type": "application/octet-stream",
        "width": 0,
        "height": 0,
        "size_bytes": 0,
        "created_at": aware_utc(datetime.fromtimestamp(0, UTC)),
    }
    insert = _insert(session, ImageRow).values(values).on_conflict_do_nothing(index_elements=["sha256"])
    return bool(session.execute(insert.returning(col(ImageRow.sha256))).first())


def release_missing_image(*, session: Session, sha256: str) -> None:
    """Take the placeholder of ``hold_missing_image`` out again, before its transaction commits."""
    session.execute(delete(ImageRow).where(col(ImageRow.sha256) == sha256))


def delete_unreferenced_images(*, session: Session, created_before: datetime) -> int:
    """Delete the image rows stored before ``created_before`` that no part refers to (their
    conversations were deleted); how many went.

    One statement, so the age is checked as each row is deleted (``save_image`` renews it). On
    PostgreSQL a part that a concurrent transaction just added makes the foreign key refuse the
    whole statement: then nothing is deleted this time (a savepoint keeps the caller's
    transaction usable), and the next sweep tries again.
    """
    used = select(PartRow.image_sha256).where(col(PartRow.image_sha256).is_not(None))
    statement = delete(ImageRow).where(
        col(ImageRow.sha256).not_in(used), col(ImageRow.created_at) < aware_utc(created_before)
    )
    try:
        with session.begin_nested():
            return len(session.execute(statement.returning(col(ImageRow.sha256))).all())
    except IntegrityError:
        return 0


def spent_on(*, session: Session, day: str) -> float:
    row = session.get(DailySpendRow, day)
    return row.usd if row else 0.0


def add_spend(*, session: Session, day: str, usd: float) -> float:
    """Add to a day's spend and return the new total, in one atomic upsert (no read, no lost update)."""
    insert = _insert(session, DailySpendRow).values(day=day, usd=usd)
    total = col(DailySpendRow.usd)
    upsert = insert.on_conflict_do_update(index_elements=["day"], set_={"usd": total + insert.excluded.usd})
    return float(session.execute(upsert.returning(total)).scalar_one())


def spend_with_reservations(*, session: Session, day: str, now: datetime) -> float:
    """A day's spend plus what every turn still in flight reserved (its cost will land on the day
    its answer does, most likely this one), forgetting reservations that expired by ``now``
    (their replicas died); call it under ``serialize_admissions``.

    The sum is one statement, so it reads one snapshot: a turn's settlement (its reservation
    dropped, its cost added, in one transaction) is counted whole or not at all.
    """
    reservation = _table(SpendReservationRow)
    session.execute(delete(reservation).where(reservation.c.expires_at <= aware_utc(now)))
    spent = select(DailySpendRow.usd).where(DailySpendRow.day == day).scalar_subquery()
    reserved = select(func.sum(reservation.c.usd)).scalar_subquery()
    return float(
        session.execute(select(func.coalesce(spent, 0.0) + func.coalesce(reserved, 0.0))).scalar_one()
    )


def reserve_spend(*, session: Session, usd: float, expires_at: datetime) -> int:
    """Count ``usd`` against the cap until the reservation is dropped or expires; its id."""
    reservation = _table(SpendReservationRow)
    inserted = reservation.insert().values(usd=usd, expires_at=aware_utc(expires_at))
    return int(session.execute(inserted.returning(reservation.c.id)).scalar_one())


def drop_reservation(*, session: Session, reservation_id: int) -> None:
    """The turn is settled (or cut off): its reservation stops counting. Dropping it twice is a no-op."""
    session.execute(delete(_table(SpendReservationRow)).where(col(SpendReservationRow.id) == reservation_id))


def serialize_admissions(*, session: Session) -> None:
    """Make this transaction the only admission under way until it commits.

    Every admission reads the counts it then adds to (rate events, reserved spend), so two at
    once must take turns. SQLite's write transaction holds the database's lock already; on
    PostgreSQL a transaction-level advisory lock does, released by the commit or rollback.
    One lock for all, not one per bucket: every turn also counts in the global bucket.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(_ADMISSION_LOCK))))


_ADMISSION_LOCK = "retouch: admission"  # named, so it never meets another advisory lock's key


@dataclass(frozen=True)
class BucketCount:
    """One rate-limit bucket's events that are not forgotten yet, and those since a moment."""

    live: int
    since: int
    oldest_since: datetime | None


def count_events(
    *, session: Session, buckets: Sequence[str], now: datetime, since: datetime
) -> dict[str, BucketCount]:
    """Forget every event whose time is past (any bucket's: the table holds only what some window
    still counts), then count ``buckets``' live events and those after ``since``. Two statements."""
    event = _table(RateEventRow)
    now = aware_utc(now)
    session.execute(delete(event).where(event.c.forget_at <= now))
    recent = event.c.at > aware_utc(since)
    rows = session.execute(
        select(
            event.c.bucket,
            func.count(),
            func.count().filter(recent),
            func.min(event.c.at).filter(recent),
        )
        .where(event.c.bucket.in_(buckets), event.c.forget_at > now)
        .group_by(event.c.bucket)
    ).all()
    return {bucket: BucketCount(live, since_, oldest) for bucket, live, since_, oldest in rows}


def add_events(*, session: Session, at: datetime, forget_at: Mapping[str, datetime], times: int = 1) -> None:
    """``times`` events at ``at`` in each bucket, kept until its bucket's ``forget_at``; one statement."""
    rows = [
        {"bucket": b, "at": aware_utc(at), "forget_at": aware_utc(t)}
        for b, t in forget_at.items()
        for _ in range(times)
    ]
    if rows:
        session.execute(_table(RateEventRow).insert(), rows)


def count_owned(*, session: Session, owner_id: str) -> int:
    """How many conversations an owner has (one indexed count)."""
    _check_owner(owner_id)
    statement = select(func.count()).select_from(ConversationRow).where(ConversationRow.owner_id == owner_id)
    return int(session.exec(statement).one())


def move_conversations(*, session: Session, from_owner: str, to_owner: str) -> int:
    """Give every conversation of one owner to another, in one UPDATE; how many moved."""
    _check_owner(from_owner)
    _check_owner(to_owner)
    result = session.execute(
        update(ConversationRow).where(col(ConversationRow.owner_id) == from_owner).values(owner_id=to_owner)
    )
    return int(cast(CursorResult[Any], result).rowcount)


def claim_conversation(*, session: Session, conversation_id: str, owner_id: str) -> None:
    """Give an unowned (pre-owner) conversation to its first visitor."""
    _check_owner(owner_id)
    row = session.get(ConversationRow, conversation_id)
    if row is None:
        raise ConversationNotFoundError(conversation_id)
    if row.owner_id is None:
        row.owner_id = owner_id
        session.flush()


def create_share_link(
    *, session: Session, conversation_id: str, token: str, kind: str, now: datetime
) -> ShareLink:
    if kind not in ("view", "continue"):
        raise ValueError(f"unknown share link kind {kind!r}")
    if session.get(ConversationRow, conversation_id) is None:
        raise ConversationNotFoundError(conversation_id)
    row = ShareLinkRow(token=token, conversation_id=conversation_id, kind=kind, created_at=aware_utc(now))
    session.add(row)
    session.flush()
    return ShareLink(token, conversation_id, kind, row.created_at)


def share_links(*, session: Session, conversation_id: str) -> list[ShareLink]:
    """The conversation's links that still work, oldest first."""
    rows = session.exec(
        select(ShareLinkRow)
        .where(ShareLinkRow.conversation_id == conversation_id, col(ShareLinkRow.revoked_at).is_(None))
        .order_by(col(ShareLinkRow.created_at))
    ).all()
    return [ShareLink(r.token, r.conversation_id, r.kind, r.created_at) for r in rows]


def resolve_share_link(*, session: Session, token: str) -> ShareLink | None:
    """The link for ``token`` if it exists and was not revoked."""
    row = session.get(ShareLinkRow, token)
    if row is None or row.revoked_at is not None:
        return None
    return ShareLink(row.token, row.conversation_id, row.kind, row.created_at)


def is_share_token(*, session: Session, token: str) -> bool:
    """Whether ``token`` is or was a share link's token (revoked ones included)."""
    return session.get(ShareLinkRow, token) is not None


def revoke_share_link(*, session: Session, conversation_id: str, token: str, now: datetime) -> bool:
    row = session.get(ShareLinkRow, token)
    if row is None or row.conversation_id != conversation_id or row.revoked_at is not None:
        return False
    row.revoked_at = aware_utc(now)
    session.flush()
    return True


def copy_conversation(
    *,
    session: Session,
    source_id: str,
    new_id: str,
    title: str,
    owner_id: str,
    now: datetime,
    through_seq: int | None = None,
) -> Conversation:
    """A new conversation holding the source's turns up to ``through_seq`` (all if None).

    Images are shared by hash, so a fork costs rows, not bytes; the source is untouched.
    """
    source = get_conversation(session=session, conversation_id=source_id)
    if source is None:
        raise ConversationNotFoundError(source_id)
    create_conversation(session=session, conversation_id=new_id, title=title, now=now, owner_id=owner_id)
    turns = source.turns if through_seq is None else source.turns[: through_seq + 1]
    if through_seq is not None and turns and turns[-1].role is Role.ASSISTANT and not turns[-1].failed:
        turns = pick_domain(turns, len(turns) - 1)  # a copy from a variant builds on that variant
    append_turns(session=session, conversation_id=new_id, turns=turns, now=now)
    copied = get_conversation(session=session, conversation_id=new_id)
    assert copied is not None
    return copied


def rename_conversation(*, session: Session, conversation_id: str, title: str, now: datetime) -> None:
    row = session.get(ConversationRow, conversation_id)
    if row is None:
        raise ConversationNotFoundError(conversation_id)
    row.title = _checked_title(title)
    row.updated_at = aware_utc(now)
    session.flush()


def delete_conversation(*, session: Session, conversation_id: str) -> bool:
    """Delete a conversation with its turns and parts (ON DELETE CASCADE); False if it was absent.

    Images are shared by content hash and stay; sweeping unreferenced ones is a separate job.
    """
    result = session.exec(delete(ConversationRow).where(col(ConversationRow.id) == conversation_id))
    session.flush()
    return bool(result.rowcount)


def _insert(session: Session, table: type[SQLModel]) -> Any:
    """The dialect's INSERT, which knows ``ON CONFLICT`` (SQLite and PostgreSQL spell it alike)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no upsert for the {dialect} dialect")


def _check_owner(owner_id: str) -> None:
    if not isinstance(owner_id, str) or not 0 < len(owner_id) <= OWNER_ID_MAX_LENGTH:
        raise ValueError(f"owner id must be 1-{OWNER_ID_MAX_LENGTH} characters")


def _checked_title(title: str) -> str:
    if len(title) > TITLE_MAX_LENGTH:
        raise ValueError(f"title longer than {TITLE_MAX_LENGTH} characters")
    return title


def _part_values(turn_id: int, position: int, part: Part) -> dict[str, Any]:
    """A part's row as the values of an INSERT: every column, so one statement takes them all."""
    values = {
        "turn_id": turn_id,
        "position": position,
        "thought": part.thought,
        "provider_metadata": plain_data(part.provider_metadata),
    }
    if isinstance(part, TextPart):
        return values | {
            "kind": _TEXT,
            "text": part.text,
            "image_sha256": None,
            "mime_type": None,
            "role": None,
        }
    validate_sha256(part.sha256)
    return values | {
        "kind": _IMAGE,
        "text": None,
        "image_sha256": part.sha256,
        "mime_type": part.mime_type,
        "role": part.role.value,
    }


def _part_from_row(row: PartRow, *, with_metadata: bool = True) -> Part:
    """The part; without its provider metadata (not read from the row at all) unless ``with_metadata``."""
    metadata = frozen_metadata(row.provider_metadata if with_metadata else None)
    if row.kind == _TEXT:
        return TextPart(row.text or "", thought=row.thought, provider_metadata=metadata)
    if row.kind == _IMAGE and row.image_sha256 is not None and row.mime_type is not None:
        return ImagePart(
            row.image_sha256,
            row.mime_type,
            role=ImageRole(row.role or ImageRole.INPUT),
            thought=row.thought,
            provider_metadata=metadata,
        )
    raise ValueError(f"part {row.id} has unknown kind {row.kind!r} or no image")


def _turn_from_row(row: TurnRow, parts: list[Part]) -> Turn:
    error = None
    if row.error_kind is not None:
        error = TurnError(kind=row.error_kind, message=row.error_message or "")
    return Turn(
        role=Role(row.role),
        parts=tuple(parts),
        provider=row.provider,
        model=row.model,
        finish_reason=row.finish_reason,
        error=error,
        notice=row.notice,
        options=frozen_metadata(row.options),
        usage=Usage.from_dict(row.usage) if row.usage else None,
        attempts=tuple(Attempt.from_dict(attempt) for attempt in row.attempts),
        request_hash=row.request_hash,
        created_at=row.created_at,
        variant=row.variant,
        picked=row.picked,
    )
