"""Append-only, named schema migrations (the simonw/llm pattern).

Each migration is a function listed in ``MIGRATIONS`` (a tuple at the end, fixed at import: no
registry to add to at run time); its ``__name__`` is its key in the ``schema_migration`` table,
so ``migrate`` runs exactly the ones a database has not seen, in order, each in its own
transaction. Rules:

- Never edit or reorder a migration that has shipped; append a new one (and its name to the tuple).
- A migration never imports ``storage.models``: those classes describe the *current* schema and
  will change. Each migration declares the DDL it needs with its own frozen ``Table`` objects
  (or an ``ALTER TABLE`` compiled for the connection's dialect), so it means the same thing
  forever and stays dialect-neutral (SQLite now, Postgres later).
- A test checks that a fully migrated database matches ``storage.models``.
- Run ``migrate`` from one process at startup, before serving requests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    inspect,
    select,
)
from sqlalchemy.schema import CreateColumn
from sqlmodel import UTCDateTime

__all__ = ["MIGRATIONS", "migrate", "schema_version"]

Migration = Callable[[Connection], None]

# The bookkeeping table is created before any migration runs, so it is not itself a migration.
_schema_migration = Table(
    "schema_migration",
    MetaData(),
    Column("name", String(200), primary_key=True),
    Column("applied_at", UTCDateTime(), nullable=False),
)


def migrate(engine: Engine, *, until: str | None = None) -> list[str]:
    """Apply pending migrations in order, stopping after ``until`` if given; return their names."""
    names = [fn.__name__ for fn in MIGRATIONS]
    if until is not None and until not in names:
        raise ValueError(f"unknown migration {until!r}; known: {names}")
    with engine.begin() as conn:
        _schema_migration.create(conn, checkfirst=True)
        already = set(conn.scalars(select(_schema_migration.c.name)))
    applied: list[str] = []
    for fn in MIGRATIONS:
        if fn.__name__ not in already:
            with engine.begin() as conn:
                fn(conn)
                record = {"name": fn.__name__, "applied_at": datetime.now(UTC)}
                conn.execute(_schema_migration.insert().values(record))
            applied.append(fn.__name__)
        if fn.__name__ == until:
            break
    return applied


def schema_version(engine: Engine) -> int:
    """How many migrations this database has had applied (0 for a blank database)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(_schema_migration.name):
            return 0
        return conn.scalar(select(func.count()).select_from(_schema_migration)) or 0


def _add_column(conn: Connection, table_name: str, column: Column[Any]) -> None:
    """``ALTER TABLE … ADD COLUMN`` with the column spec compiled for this dialect."""
    Table(table_name, MetaData(), column)  # the compiler needs the column attached to a table
    spec = CreateColumn(column).compile(dialect=conn.dialect)
    table = conn.dialect.identifier_preparer.quote(table_name)
    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {spec}")


def m001_initial(conn: Connection) -> None:
    metadata = MetaData()
    Table(
        "conversation",
        metadata,
        Column("id", String(32), primary_key=True),
        Column("title", String(200), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "image",
        metadata,
        Column("sha256", String(64), primary_key=True),
        Column("mime_type", String(100), nullable=False),
        Column("width", Integer, nullable=False),
        Column("height", Integer, nullable=False),
        Column("size_bytes", Integer, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "turn",
        metadata,
        Column("id", Integer, primary_key=True),
        Column(
            "conversation_id",
            String(32),
            ForeignKey("conversation.id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("seq", Integer, nullable=False),
        Column("role", String(16), nullable=False),
        Column("status", String(16), nullable=False),
        Column("provider", String(64)),
        Column("model", String(200)),
        Column("error_kind", String(200)),
        Column("error_message", Text),
        Column("options", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        # seq is the turn's position; two writers must never both claim the same one.
        UniqueConstraint("conversation_id", "seq", name="uq_turn_conversation_seq"),
        # Loading a conversation fetches its turns by conversation_id.
        Index("ix_turn_conversation_id", "conversation_id"),
    )
    Table(
        "part",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("turn_id", Integer, ForeignKey("turn.id", ondelete="CASCADE"), nullable=False),
        Column("position", Integer, nullable=False),
        Column("kind", String(16), nullable=False),
        Column("text", Text),
        Column("image_sha256", String(64), ForeignKey("image.sha256")),
        Column("mime_type", String(100)),
        # Provider data echoed back on replay, verbatim; thought signatures can be megabytes.
        Column("provider_metadata", JSON, nullable=False),
        UniqueConstraint("turn_id", "position", name="uq_part_turn_position"),
        # Loading parts by turn, and the cascade from turn deletes.
        Index("ix_part_turn_id", "turn_id"),
        # Finding the parts that use an image (FK checks on image deletes, orphan sweeps).
        Index("ix_part_image_sha256", "image_sha256"),
    )
    metadata.create_all(conn, checkfirst=False)


def m002_turn_usage(conn: Connection) -> None:
    # Token counts and the provider's finish reason, kept per turn for display and debugging.
    _add_column(conn, "turn", Column("usage", JSON, nullable=False, server_default="{}"))
    _add_column(conn, "turn", Column("finish_reason", String(64)))
    # The conversation list is ordered by updated_at, newest first.
    conversation = Table("conversation", MetaData(), Column("updated_at", DateTime(timezone=True)))
    Index("ix_conversation_updated_at", conversation.c.updated_at).create(conn)


def m003_turn_attempts(conn: Connection) -> None:
    # Every provider call made for a turn (Gemini, then OpenAI on fallback), so the chat can
    # say which provider answered and why a fallback happened.
    _add_column(conn, "turn", Column("attempts", JSON, nullable=False, server_default="[]"))


def m004_owners_and_share_links(conn: Connection) -> None:
    # Conversations belong to a browser (or an HF user) so each visitor lists only their own.
    _add_column(conn, "conversation", Column("owner_id", String(100)))
    conversation = Table("conversation", MetaData(), Column("owner_id", String(100)))
    Index("ix_conversation_owner_id", conversation.c.owner_id).create(conn)
    # Share links: unguessable tokens granting read-only ("view") or write ("continue") access.
    metadata = MetaData()
    Table("conversation", metadata, Column("id", String(32), primary_key=True))
    share_link = Table(
        "share_link",
        metadata,
        Column("token", String(64), primary_key=True),
        Column(
            "conversation_id",
            String(32),
            ForeignKey("conversation.id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("kind", String(16), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("revoked_at", DateTime(timezone=True)),
    )
    share_link.create(conn)
    Index("ix_share_link_conversation_id", share_link.c.conversation_id).create(conn)


def m005_daily_spend(conn: Connection) -> None:
    # What the server's own API keys have cost today (UTC), so a public demo can stop at a cap.
    Table(
        "daily_spend",
        MetaData(),
        Column("day", String(10), primary_key=True),
        Column("usd", Float, nullable=False),
    ).create(conn)


def m006_turn_cost_and_request_hash(conn: Connection) -> None:
    # The estimated dollar cost of the call that answered a turn (shown per turn and summed
    # per conversation), and a hash of the exact request, so an identical request with a
    # fixed seed can reuse the stored answer instead of paying again.
    _add_column(conn, "turn", Column("cost_usd", Float))
    _add_column(conn, "turn", Column("request_hash", String(64)))
    turn = Table("turn", MetaData(), Column("request_hash", String(64)))
    Index("ix_turn_request_hash", turn.c.request_hash).create(conn)


#: Every migration, oldest first; append only.
MIGRATIONS: tuple[Migration, ...] = (
    m001_initial,
    m002_turn_usage,
    m003_turn_attempts,
    m004_owners_and_share_links,
    m005_daily_spend,
    m006_turn_cost_and_request_hash,
)
