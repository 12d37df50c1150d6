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

Every replica runs ``migrate`` at startup, before serving requests: it holds the migrations lock
(``storage/locks.py``: an advisory lock on PostgreSQL, a file lock beside a SQLite file) from
reading the ``schema_migration`` table to the last migration, so one replica migrates and the
others wait, then find nothing left to do. Alembic would replace the named functions with a
revision graph and its own version table, but it takes no lock either (concurrent upgrades are
left to the deployer), so the named migrations stay and existing databases upgrade as before.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
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
    false,
    func,
    inspect,
    select,
)
from sqlalchemy.schema import CreateColumn
from sqlmodel import UTCDateTime

from storage import locks

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
    """Apply pending migrations in order, stopping after ``until`` if given; return their names.

    The migrations lock is held throughout: another process migrating the same database waits.
    """
    names = [fn.__name__ for fn in MIGRATIONS]
    if until is not None and until not in names:
        raise ValueError(f"unknown migration {until!r}; known: {names}")
    with locks.exclusive(engine, locks.MIGRATIONS):
        # Read under the lock: the replica that held it before may just have applied them all.
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


def m007_part_roles_and_neutral_usage(conn: Connection) -> None:
    # What Retouch knows about a part becomes a column: an image's role (it was kept as
    # provider_metadata["retouch"]["role"]) and the thought flag (provider_metadata["gemini"]
    # ["thought"]); provider_metadata keeps only what a provider must get back (Gemini's
    # thoughtSignature). A turn's usage becomes neutral token counts with its estimated cost
    # (which was the cost_usd column), and an answer without an image gets its sentence as a
    # notice instead of an error beside its parts.
    _add_column(conn, "part", Column("role", String(16)))
    _add_column(conn, "part", Column("thought", Boolean, nullable=False, server_default=false()))
    _add_column(conn, "turn", Column("notice", Text))
    metadata = MetaData()
    turn = Table(
        "turn",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("role", String(16)),
        Column("status", String(16)),
        Column("provider", String(64)),
        Column("error_kind", String(200)),
        Column("error_message", Text),
        Column("notice", Text),
        Column("usage", JSON),
        Column("cost_usd", Float),
    )
    part = Table(
        "part",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("turn_id", Integer),
        Column("kind", String(16)),
        Column("role", String(16)),
        Column("thought", Boolean),
        Column("provider_metadata", JSON),
    )
    answers = set(conn.scalars(select(turn.c.id).where(turn.c.role == "assistant")))
    for row in conn.execute(select(part.c.id, part.c.turn_id, part.c.kind, part.c.provider_metadata)).all():
        raw = row.provider_metadata if isinstance(row.provider_metadata, dict) else {}
        role = None
        if row.kind == "image":
            role = (raw.get("retouch") or {}).get("role") or ("answer" if row.turn_id in answers else "input")
        thought = any(isinstance(v, dict) and v.get("thought") is True for v in raw.values())
        gemini = raw.get("gemini")
        kept = {k: v for k, v in (gemini if isinstance(gemini, dict) else {}).items() if k in _SIGNATURE_KEYS}
        conn.execute(
            part.update()
            .where(part.c.id == row.id)
            .values(role=role, thought=thought, provider_metadata={"gemini": kept} if kept else {})
        )
    for turn_row in conn.execute(
        select(
            turn.c.id,
            turn.c.status,
            turn.c.provider,
            turn.c.error_kind,
            turn.c.error_message,
            turn.c.usage,
            turn.c.cost_usd,
        )
    ).all():
        values: dict[str, Any] = {}
        if turn_row.status == "ok" and turn_row.error_kind is not None:
            values |= {"notice": turn_row.error_message or "", "error_kind": None, "error_message": None}
        usage = turn_row.usage if isinstance(turn_row.usage, dict) else {}
        reported = turn_row.status == "ok" and turn_row.provider is not None and (usage or turn_row.cost_usd)
        values["usage"] = _m007_usage(turn_row.provider, usage, turn_row.cost_usd) if reported else {}
        conn.execute(turn.update().where(turn.c.id == turn_row.id).values(**values))
    conn.exec_driver_sql("ALTER TABLE turn DROP COLUMN cost_usd")


_SIGNATURE_KEYS = ("thoughtSignature", "thought_signature")


def _m007_usage(provider: str | None, raw: dict[str, Any], cost: float | None) -> dict[str, Any]:
    """Gemini's usageMetadata or OpenAI's usage as the neutral counts (frozen here, as they were read)."""

    def count(value: object) -> int:
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    if provider == "gemini":
        details = raw.get("candidatesTokensDetails")
        image = sum(
            count(d.get("tokenCount"))
            for d in (details if isinstance(details, list) else [])
            if isinstance(d, dict) and d.get("modality") == "IMAGE"
        )
        counts = {
            "input_tokens": count(raw.get("promptTokenCount")),
            "output_tokens": max(count(raw.get("candidatesTokenCount")) - image, 0),
            "image_tokens": image,
            "thought_tokens": count(raw.get("thoughtsTokenCount")),
        }
    else:
        output = count(raw.get("output_tokens"))
        details = raw.get("output_tokens_details")
        image = count(details.get("image_tokens")) if isinstance(details, dict) else output
        counts = {
            "input_tokens": count(raw.get("input_tokens")),
            "output_tokens": max(output - image, 0),
            "image_tokens": image,
            "thought_tokens": 0,
        }
    return {**counts, "cost_usd": float(cost or 0.0)}


def m008_conversation_thumbnail(conn: Connection) -> None:
    # "My conversations" shows each conversation's image from its own row instead of reading
    # every image part of every listed conversation: the image its chat shows last, kept up to
    # date with each appended turn (storage.repository). The backfill applies the same rule,
    # frozen here: the newest answered ("ok") turn that has a picture (an input or an answer image,
    # never a mask or a marked copy) gives its last non-thought one, or its last thought image if it
    # has no other. It reads the role and thought columns m007 made.
    _add_column(conn, "conversation", Column("thumbnail_sha256", String(64)))
    _add_column(conn, "conversation", Column("thumbnail_mime_type", String(100)))
    metadata = MetaData()
    conversation = Table(
        "conversation",
        metadata,
        Column("id", String(32), primary_key=True),
        Column("thumbnail_sha256", String(64)),
        Column("thumbnail_mime_type", String(100)),
    )
    turn = Table(
        "turn",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("conversation_id", String(32)),
        Column("seq", Integer),
        Column("status", String(16)),
    )
    part = Table(
        "part",
        metadata,
        Column("turn_id", Integer),
        Column("position", Integer),
        Column("kind", String(16)),
        Column("image_sha256", String(64)),
        Column("mime_type", String(100)),
        Column("role", String(16)),
        Column("thought", Boolean),
    )
    rows = conn.execute(
        select(
            turn.c.conversation_id,
            turn.c.id,
            part.c.image_sha256,
            part.c.mime_type,
            part.c.role,
            part.c.thought,
        )
        .join(turn, part.c.turn_id == turn.c.id)
        .where(part.c.kind == "image", turn.c.status == "ok", part.c.image_sha256.is_not(None))
        .order_by(turn.c.conversation_id, turn.c.seq.desc(), part.c.position)
    )
    # Rows come newest turn first within each conversation: the first turn seen with a picture
    # is the one whose image the chat shows.
    newest: dict[str, tuple[int, list[tuple[str, str, bool]]]] = {}
    for conversation_id, turn_id, sha, mime, role, thought in rows:
        if role not in ("input", "answer"):
            continue
        turn_id_, images = newest.setdefault(conversation_id, (turn_id, []))
        if turn_id_ == turn_id:
            images.append((sha, mime, thought))
    chosen = {}
    for conversation_id, (_, images) in newest.items():
        sha, mime, _ = ([image for image in images if not image[2]] or images)[-1]
        chosen[conversation_id] = (sha, mime)
    for conversation_id, (sha, mime) in chosen.items():
        conn.execute(
            conversation.update()
            .where(conversation.c.id == conversation_id)
            .values(thumbnail_sha256=sha, thumbnail_mime_type=mime)
        )


def m009_conversation_turn_count(conn: Connection) -> None:
    # How many turns a conversation holds, kept on its row: appending a turn increments it in the
    # same UPDATE that stamps the conversation's time (storage.repository), which numbers the
    # turn without a max(seq) query, and takes the row's lock first where the database has row
    # locks, so two writers of one conversation cannot draw the same number.
    _add_column(conn, "conversation", Column("turn_count", Integer, nullable=False, server_default="0"))
    metadata = MetaData()
    conversation = Table(
        "conversation", metadata, Column("id", String(32), primary_key=True), Column("turn_count", Integer)
    )
    turn = Table("turn", metadata, Column("conversation_id", String(32)), Column("seq", Integer))
    next_seq = (
        select(func.coalesce(func.max(turn.c.seq) + 1, 0))
        .where(turn.c.conversation_id == conversation.c.id)
        .scalar_subquery()
    )
    conn.execute(conversation.update().values(turn_count=next_seq))


def m010_conversation_leases(conn: Connection) -> None:
    # One turn at a time per conversation across replicas: the turn in flight holds the
    # conversation's row here (chat/conversation/leases.py), taken with one upsert that succeeds
    # only where no live lease is, renewed while the turn runs, deleted when it ends. A replica
    # that dies leaves a row that expires, and the next turn takes it over.
    metadata = MetaData()
    Table("conversation", metadata, Column("id", String(32), primary_key=True))
    Table(
        "conversation_lease",
        metadata,
        Column(
            "conversation_id",
            String(32),
            ForeignKey("conversation.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        Column("holder", String(100), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
    ).create(conn)


def m011_shared_limits(conn: Connection) -> None:
    # The rate limits and the daily cap, shared by every replica on the database
    # (chat/limits/guard.py). A rate event is one turn counted in one bucket (a visitor's address,
    # their key, or everyone), kept until ``forget_at``, when no window counts it any more. A spend
    # reservation is a turn in flight on the server's keys, counted at its worst case against the
    # daily cap until the turn's answer settles it, or until ``expires_at`` if its replica died.
    metadata = MetaData()
    rate_event = Table(
        "rate_event",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("bucket", String(64), nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("forget_at", DateTime(timezone=True), nullable=False),
    )
    Index("ix_rate_event_bucket", rate_event.c.bucket)
    Index("ix_rate_event_forget_at", rate_event.c.forget_at)
    Table(
        "spend_reservation",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("usd", Float, nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
    )
    metadata.create_all(conn, checkfirst=False)


def m012_answer_variants(conn: Connection) -> None:
    # Several answers to one message made at once (the Variants option): each is a turn with its
    # ``variant`` number, and ``picked`` marks the answer the next edit builds on among its
    # message's answers. Picking another changes no turn count, so the conversation's ``revision``
    # counts such changes: a replica's copy is current only if both match. Rows stored before have
    # no pick, and replay keeps their newest answer, as before (chat.domain.latest_answers).
    _add_column(conn, "turn", Column("variant", Integer, nullable=True))
    _add_column(conn, "turn", Column("picked", Boolean, nullable=False, server_default=false()))
    _add_column(conn, "conversation", Column("revision", Integer, nullable=False, server_default="0"))


#: Every migration, oldest first; append only.
MIGRATIONS: tuple[Migration, ...] = (
    m001_initial,
    m002_turn_usage,
    m003_turn_attempts,
    m004_owners_and_share_links,
    m005_daily_spend,
    m006_turn_cost_and_request_hash,
    m007_part_roles_and_neutral_usage,
    m008_conversation_thumbnail,
    m009_conversation_turn_count,
    m010_conversation_leases,
    m011_shared_limits,
    m012_answer_variants,
)
