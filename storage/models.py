"""Every SQLModel table, in one place; rows never leave ``storage/``.

These classes describe the *current* schema for queries. They do not create it:
``storage.migrations`` does, with DDL frozen in each migration, and a test checks that the
migrated database matches this metadata. Change a table here only together with a new
migration.

Datetimes use sqlmodel's ``UTCDateTime`` (a ``DateTime(timezone=True)`` that refuses naive
values and hands back aware UTC ones): SQLite keeps no offset, so a plain
``DateTime(timezone=True)`` would read back naive datetimes there.

JSON columns hold provider data verbatim (Gemini thought signatures can be megabytes); the
generic ``JSON`` type is unbounded on SQLite (TEXT) and keeps key order on Postgres (``json``,
not ``jsonb``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel, UTCDateTime

__all__ = [
    "CONVERSATION_ID_MAX_LENGTH",
    "ConversationLeaseRow",
    "ConversationRow",
    "DailySpendRow",
    "ERROR_KIND_MAX_LENGTH",
    "FINISH_REASON_MAX_LENGTH",
    "ImageRow",
    "LEASE_HOLDER_MAX_LENGTH",
    "MIME_TYPE_MAX_LENGTH",
    "MODEL_MAX_LENGTH",
    "OWNER_ID_MAX_LENGTH",
    "PROVIDER_MAX_LENGTH",
    "PartRow",
    "RateEventRow",
    "SchemaMigrationRow",
    "ShareLinkRow",
    "SpendReservationRow",
    "TITLE_MAX_LENGTH",
    "TurnRow",
]

CONVERSATION_ID_MAX_LENGTH = 32
OWNER_ID_MAX_LENGTH = 100
TITLE_MAX_LENGTH = 200
# PostgreSQL enforces VARCHAR lengths (SQLite does not): what an import may carry is checked against them.
PROVIDER_MAX_LENGTH = 64
MODEL_MAX_LENGTH = 200
FINISH_REASON_MAX_LENGTH = 64
ERROR_KIND_MAX_LENGTH = 200
MIME_TYPE_MAX_LENGTH = 100
LEASE_HOLDER_MAX_LENGTH = 100


class ConversationRow(SQLModel, table=True):
    __tablename__ = "conversation"
    # The conversation list sorts by updated_at (added by m002_turn_usage).
    __table_args__ = (Index("ix_conversation_updated_at", "updated_at"),)

    id: str = Field(primary_key=True, max_length=CONVERSATION_ID_MAX_LENGTH)
    title: str = Field(max_length=TITLE_MAX_LENGTH)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    # Who may list, rename, delete and share it (m004): a browser's id or "hf:<user>".
    owner_id: str | None = Field(default=None, max_length=OWNER_ID_MAX_LENGTH, index=True)
    # The image its chat shows last, for "My conversations" (m008): set with each appended turn.
    thumbnail_sha256: str | None = Field(default=None, max_length=64)
    thumbnail_mime_type: str | None = Field(default=None, max_length=100)
    # How many turns it holds (m009): the next turn's seq, counted up by the append that stores it.
    turn_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Changes that add no turn (m012: a pick of another variant), counted: with turn_count, the
    # version a replica's copy of the conversation is checked against (chat/conversation/turns.py).
    revision: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class ConversationLeaseRow(SQLModel, table=True):
    """Which turn may write to a conversation now, across every replica (m010): a row per turn in
    flight, taken atomically, renewed while the turn runs, deleted when it ends; a row whose
    ``expires_at`` has passed belongs to a replica that died and may be taken over."""

    __tablename__ = "conversation_lease"

    conversation_id: str = Field(
        primary_key=True,
        foreign_key="conversation.id",
        ondelete="CASCADE",
        max_length=CONVERSATION_ID_MAX_LENGTH,
    )
    holder: str = Field(max_length=LEASE_HOLDER_MAX_LENGTH)  # "<replica>:<random>", new for each turn
    expires_at: datetime = Field(sa_type=UTCDateTime)


class ShareLinkRow(SQLModel, table=True):
    """A capability URL: whoever holds ``token`` may view (or, for "continue", also write)."""

    __tablename__ = "share_link"

    token: str = Field(primary_key=True, max_length=64)
    conversation_id: str = Field(
        foreign_key="conversation.id",
        ondelete="CASCADE",
        index=True,
        max_length=CONVERSATION_ID_MAX_LENGTH,
    )
    kind: str = Field(max_length=16)
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class DailySpendRow(SQLModel, table=True):
    """Estimated dollars spent on the server's own keys on one UTC day."""

    __tablename__ = "daily_spend"

    day: str = Field(primary_key=True, max_length=10)
    usd: float


class SpendReservationRow(SQLModel, table=True):
    """A turn in flight on the server's keys, counted at its worst case against the daily cap (m011)
    until its answer settles it, or until ``expires_at`` if its replica died."""

    __tablename__ = "spend_reservation"

    id: int | None = Field(default=None, primary_key=True)
    usd: float
    expires_at: datetime = Field(sa_type=UTCDateTime)


class RateEventRow(SQLModel, table=True):
    """One turn counted in one rate-limit bucket (m011), until ``forget_at``, when no window counts it."""

    __tablename__ = "rate_event"

    id: int | None = Field(default=None, primary_key=True)
    bucket: str = Field(max_length=64, index=True)
    at: datetime = Field(sa_type=UTCDateTime)
    forget_at: datetime = Field(sa_type=UTCDateTime, index=True)


class ImageRow(SQLModel, table=True):
    __tablename__ = "image"

    sha256: str = Field(primary_key=True, max_length=64)
    mime_type: str = Field(max_length=MIME_TYPE_MAX_LENGTH)
    width: int
    height: int
    size_bytes: int
    created_at: datetime = Field(sa_type=UTCDateTime)


class TurnRow(SQLModel, table=True):
    __tablename__ = "turn"
    __table_args__ = (UniqueConstraint("conversation_id", "seq", name="uq_turn_conversation_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(
        foreign_key="conversation.id",
        ondelete="CASCADE",
        index=True,
        max_length=CONVERSATION_ID_MAX_LENGTH,
    )
    seq: int
    role: str = Field(max_length=16)
    status: str = Field(max_length=16)
    provider: str | None = Field(default=None, max_length=PROVIDER_MAX_LENGTH)
    model: str | None = Field(default=None, max_length=MODEL_MAX_LENGTH)
    finish_reason: str | None = Field(default=None, max_length=FINISH_REASON_MAX_LENGTH)
    error_kind: str | None = Field(default=None, max_length=ERROR_KIND_MAX_LENGTH)
    error_message: str | None = Field(default=None, sa_type=Text)
    notice: str | None = Field(default=None, sa_type=Text)  # answered without an image: why (m007)
    options: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # chat.domain.Usage.to_dict(): neutral token counts and the estimated cost; {} for no answer (m007).
    usage: dict[str, Any] = Field(
        default_factory=dict, sa_type=JSON, sa_column_kwargs={"server_default": "{}"}
    )
    attempts: list[dict[str, Any]] = Field(
        default_factory=list, sa_type=JSON, sa_column_kwargs={"server_default": "[]"}
    )
    request_hash: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    # One of several answers made at once (m012): 0 for "a"; None for a lone answer or a message.
    variant: int | None = Field(default=None)
    # The answer the next edit builds on, among its message's answers (chat.domain.latest_answers).
    picked: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class PartRow(SQLModel, table=True):
    __tablename__ = "part"
    __table_args__ = (UniqueConstraint("turn_id", "position", name="uq_part_turn_position"),)

    id: int | None = Field(default=None, primary_key=True)
    turn_id: int = Field(foreign_key="turn.id", ondelete="CASCADE", index=True)
    position: int
    kind: str = Field(max_length=16)
    text: str | None = Field(default=None, sa_type=Text)
    image_sha256: str | None = Field(default=None, foreign_key="image.sha256", index=True, max_length=64)
    mime_type: str | None = Field(default=None, max_length=MIME_TYPE_MAX_LENGTH)
    role: str | None = Field(default=None, max_length=16)  # images: chat.domain.ImageRole (m007)
    thought: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    provider_metadata: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class SchemaMigrationRow(SQLModel, table=True):
    __tablename__ = "schema_migration"

    name: str = Field(primary_key=True, max_length=200)
    applied_at: datetime = Field(sa_type=UTCDateTime)
