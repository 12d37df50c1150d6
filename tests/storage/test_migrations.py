"""Migrations: blank database and previous schema both end at the schema storage.models describes."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlmodel import SQLModel

import storage.migrations
from chat.domain import ImageRole, Role, TextPart, Turn, Usage
from storage import (
    append_turn,
    get_conversation,
    make_engine,
    migrate,
    schema_version,
    session_scope,
    sqlite_url,
)
from storage.db import DB_FILENAME

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.both_databases

ALL = [
    "m001_initial",
    "m002_turn_usage",
    "m003_turn_attempts",
    "m004_owners_and_share_links",
    "m005_daily_spend",
    "m006_turn_cost_and_request_hash",
    "m007_part_roles_and_neutral_usage",
    "m008_conversation_thumbnail",
    "m009_conversation_turn_count",
    "m010_conversation_leases",
    "m011_shared_limits",
    "m012_answer_variants",
]


def _pragma(engine: Engine, name: str) -> Any:
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def _schema(engine: Engine) -> dict[str, dict[str, Any]]:
    """Everything about each table that reflection can see, in order-independent form."""
    inspector = inspect(engine)
    schema: dict[str, dict[str, Any]] = {}
    for table in inspector.get_table_names():
        schema[table] = {
            "columns": {
                c["name"]: (str(c["type"]), c["nullable"], c["default"]) for c in inspector.get_columns(table)
            },
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted(
                (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"], fk["options"])
                for fk in inspector.get_foreign_keys(table)
            ),
            "unique": sorted((u["name"], u["column_names"]) for u in inspector.get_unique_constraints(table)),
            "indexes": sorted(
                (i["name"], i["column_names"], bool(i["unique"])) for i in inspector.get_indexes(table)
            ),
        }
    return schema


def test_every_migration_function_is_listed_in_order() -> None:
    """A new ``mNNN_`` function left out of MIGRATIONS would never run."""
    defined = sorted(name for name in vars(storage.migrations) if re.fullmatch(r"m\d{3}_\w+", name))

    assert [fn.__name__ for fn in storage.migrations.MIGRATIONS] == defined == ALL


def test_blank_database_gets_every_migration(engine: Engine, data_dir: Path) -> None:
    # the ``engine`` fixture has run migrate() on a blank file
    assert schema_version(engine) == len(ALL) == 12
    with engine.connect() as conn:
        recorded = conn.execute(text("SELECT name FROM schema_migration ORDER BY name")).scalars().all()
    assert recorded == ALL


@pytest.mark.sqlite_only
def test_sqlite_connections_get_their_pragmas(engine: Engine) -> None:
    assert _pragma(engine, "journal_mode") == "wal"
    assert _pragma(engine, "foreign_keys") == 1
    assert _pragma(engine, "busy_timeout") == 30000
    assert _pragma(engine, "synchronous") == 1  # NORMAL


def test_migrate_reports_what_it_applied_and_is_then_a_no_op(open_engine: Callable[[], Engine]) -> None:
    engine = open_engine()
    assert schema_version(engine) == 0

    assert migrate(engine) == ALL
    assert migrate(engine) == []
    assert schema_version(engine) == len(ALL)


def test_previous_schema_is_upgraded_with_data_intact(open_engine: Callable[[], Engine]) -> None:
    engine = open_engine()
    assert migrate(engine, until="m001_initial") == ["m001_initial"]
    assert schema_version(engine) == 1
    assert {c["name"] for c in inspect(engine).get_columns("turn")}.isdisjoint({"usage", "finish_reason"})
    with engine.begin() as conn:
        _insert_m001_conversation(conn)

    assert migrate(engine) == ALL[1:]

    assert schema_version(engine) == len(ALL)
    with engine.connect() as conn:
        usage, finish_reason = conn.execute(text("SELECT usage, finish_reason FROM turn WHERE seq = 1")).one()
    assert (usage, finish_reason) in [("{}", None), ({}, None)]  # SQLite hands back the JSON text
    with session_scope(engine) as session:
        loaded = get_conversation(session=session, conversation_id="old")
    assert loaded is not None
    assert loaded.title == "Before the upgrade"
    assert [t.text() for t in loaded.turns] == ["make it red", "Done."]
    assert loaded.turns[1].parts[0].provider_metadata == {"gemini": {"thoughtSignature": "c2ln"}}
    assert loaded.turns[1].options == {"model": "gemini-2.5-flash-image"}
    assert (loaded.turns[1].usage, loaded.turns[1].finish_reason) == (None, None)
    assert loaded.turns[1].attempts == ()


def test_version_two_is_upgraded_to_the_latest_with_turns_intact(open_engine: Callable[[], Engine]) -> None:
    engine = open_engine()
    migrate(engine, until="m002_turn_usage")
    with engine.begin() as conn:
        _insert_m001_conversation(conn)
        conn.execute(text("UPDATE turn SET usage = '{\"totalTokenCount\": 7}' WHERE seq = 1"))

    assert migrate(engine) == ALL[2:]

    with session_scope(engine) as session:
        loaded = get_conversation(session=session, conversation_id="old")
    assert loaded is not None
    assert loaded.turns[1].usage == Usage()  # a total alone says nothing of what was priced how
    assert [t.attempts for t in loaded.turns] == [(), ()]


def _insert_m001_conversation(conn: Connection) -> None:
    ts = "2025-12-31 23:00:00.000000"
    conn.execute(
        text("INSERT INTO conversation (id, title, created_at, updated_at) VALUES ('old', :title, :ts, :ts)"),
        {"title": "Before the upgrade", "ts": ts},
    )
    turn_sql = text(
        "INSERT INTO turn (id, conversation_id, seq, role, status, provider, model, options, created_at) "
        "VALUES (:id, 'old', :seq, :role, 'ok', :provider, :model, :options, :ts)"
    )
    conn.execute(
        turn_sql,
        [
            {"id": 1, "seq": 0, "role": "user", "provider": None, "model": None, "options": "{}", "ts": ts},
            {
                "id": 2,
                "seq": 1,
                "role": "assistant",
                "provider": "gemini",
                "model": "gemini-2.5-flash-image",
                "options": '{"model": "gemini-2.5-flash-image"}',
                "ts": ts,
            },
        ],
    )
    conn.execute(
        text(
            "INSERT INTO part (turn_id, position, kind, text, provider_metadata) "
            "VALUES (1, 0, 'text', 'make it red', '{}'), "
            "(2, 0, 'text', 'Done.', '{\"gemini\": {\"thoughtSignature\": \"c2ln\"}}')"
        )
    )


def _expected_schema(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> dict[str, dict[str, Any]]:
    """The schema storage.models describes, as a database of ``dialect`` reflects it."""
    if dialect == "postgresql":
        server = request.getfixturevalue("postgres")
        reference = create_engine(server.url(server.fresh_database()))
    else:
        reference = create_engine(f"sqlite:///{tmp_path / 'reference.sqlite3'}")
    try:
        SQLModel.metadata.create_all(reference)
        return _schema(reference)
    finally:
        reference.dispose()


def test_migrated_schema_matches_sqlmodel_metadata(
    engine: Engine, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """What the migrations made is what storage.models describes, on this dialect."""
    expected = _expected_schema(engine.dialect.name, tmp_path, request)

    migrated = _schema(engine)

    assert sorted(migrated) == sorted(expected) == sorted(SQLModel.metadata.tables)
    for table in expected:
        assert sorted(migrated[table]["columns"]) == sorted(expected[table]["columns"]), table
    assert migrated == expected


def test_failing_migration_rolls_back_and_is_not_recorded(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def m999_broken(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE half_done (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("ALTER TABLE turn ADD COLUMN seq INTEGER")  # duplicate column: fails

    monkeypatch.setattr(storage.migrations, "MIGRATIONS", [*storage.migrations.MIGRATIONS, m999_broken])

    with pytest.raises(Exception, match="(?i)duplicate ?column"):
        migrate(engine)

    assert schema_version(engine) == len(ALL)
    assert not inspect(engine).has_table("half_done")


def test_unknown_until_is_rejected(open_engine: Callable[[], Engine]) -> None:
    with pytest.raises(ValueError, match="m999"):
        migrate(open_engine(), until="m999_nothing")


@pytest.mark.sqlite_only
def test_database_file_and_directory_are_private(engine: Engine, data_dir: Path) -> None:
    assert stat.S_IMODE((data_dir / DB_FILENAME).stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    # The pooled connection keeps WAL mode's -wal and -shm files around; SQLite copies the file's mode.
    sidecars = sorted(data_dir.glob(f"{DB_FILENAME}-*"))
    assert [p.name for p in sidecars] == [f"{DB_FILENAME}-shm", f"{DB_FILENAME}-wal"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in sidecars} == {0o600}


def test_version_three_gains_owners_and_share_links_with_old_rows_unowned(
    open_engine: Callable[[], Engine],
) -> None:
    engine = open_engine()
    migrate(engine, until="m003_turn_attempts")
    with engine.begin() as conn:
        _insert_m001_conversation(conn)

    assert migrate(engine) == ALL[3:]

    with engine.connect() as conn:
        assert conn.execute(text("SELECT owner_id FROM conversation")).scalars().all() == [None]
    assert inspect(engine).has_table("share_link")


def test_version_six_gets_roles_and_thoughts_as_fields_and_neutral_usage(
    open_engine: Callable[[], Engine],
) -> None:
    engine = open_engine()
    migrate(engine, until="m006_turn_cost_and_request_hash")
    sha = "ab" * 32
    with engine.begin() as conn:
        _insert_m001_conversation(conn)
        conn.execute(
            text(
                "INSERT INTO image (sha256, mime_type, width, height, size_bytes, created_at) VALUES (:sha, 'image/png', 1, 1, 1, '2025-12-31 23:00:00.000000')"
            ),
            {"sha": sha},
        )
        usage = '{"promptTokenCount": 100, "candidatesTokenCount": 1300, "thoughtsTokenCount": 20, "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}]}'
        conn.execute(text("UPDATE turn SET usage = :usage, cost_usd = 0.25 WHERE id = 2"), {"usage": usage})
        conn.execute(
            text(
                "INSERT INTO part (turn_id, position, kind, image_sha256, mime_type, provider_metadata) VALUES "
                "(1, 1, 'image', :sha, 'image/png', '{\"retouch\": {\"role\": \"mask\"}}'), "
                '(2, 1, \'image\', :sha, \'image/png\', \'{"gemini": {"thought": true, "thoughtSignature": "czI="}}\'), '
                "(2, 2, 'image', :sha, 'image/png', '{\"openai\": {\"size\": \"1024x1024\"}}')"
            ),
            {"sha": sha},
        )
        conn.execute(
            text(
                "INSERT INTO turn (id, conversation_id, seq, role, status, provider, model, options, usage, attempts, error_kind, error_message, created_at) "
                "VALUES (3, 'old', 2, 'assistant', 'ok', 'gemini', 'm', '{}', '{}', '[]', 'no_image', 'No image this time.', '2025-12-31 23:00:00.000000')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO part (turn_id, position, kind, text, provider_metadata) VALUES (3, 0, 'text', 'Which car?', '{}')"
            )
        )

    assert migrate(engine) == ALL[6:]

    with session_scope(engine) as session:
        loaded = get_conversation(session=session, conversation_id="old")
    assert loaded is not None
    user, answer, text_only = loaded.turns
    assert [p.role for p in user.images()] == [ImageRole.MASK]
    thought, plain = answer.images()
    assert (thought.role, thought.thought, dict(thought.provider_metadata)) == (
        ImageRole.ANSWER,
        True,
        {"gemini": {"thoughtSignature": "czI="}},
    )
    assert (plain.role, plain.thought, dict(plain.provider_metadata)) == (ImageRole.ANSWER, False, {})
    assert answer.usage == Usage(
        input_tokens=100, output_tokens=10, image_tokens=1290, thought_tokens=20, cost_usd=0.25
    )
    assert user.usage is None
    assert text_only.error is None and text_only.notice == "No image this time."
    assert text_only.text() == "Which car?"


def test_thumbnails_are_backfilled_as_the_chat_shows_its_latest_image(
    open_engine: Callable[[], Engine],
) -> None:
    """An answer's image (not its thought image), never a painted turn's marked copy or mask,
    never a failed turn's; a thought image only where a turn has nothing else."""
    engine = open_engine()
    migrate(engine, until="m006_turn_cost_and_request_hash")
    ts = "2025-12-31 23:00:00.000000"
    shas = {name: name * 64 for name in "abcdmkt"}
    marked, mask = '{"retouch": {"role": "marked"}}', '{"retouch": {"role": "mask"}}'
    thought = '{"gemini": {"thought": true}}'
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO image VALUES (:sha, 'image/png', 1, 1, 1, :ts)"),
            [{"sha": sha, "ts": ts} for sha in shas.values()],
        )
        conn.execute(
            text("INSERT INTO conversation (id, title, created_at, updated_at) VALUES (:id, 't', :ts, :ts)"),
            [{"id": id_, "ts": ts} for id_ in ("painted", "thinking", "text-only")],
        )
        turns = [  # (id, conversation, seq, role, status)
            (1, "painted", 0, "user", "ok"),
            (2, "painted", 1, "assistant", "ok"),
            (3, "painted", 2, "user", "ok"),
            (4, "painted", 3, "assistant", "error"),
            (5, "thinking", 0, "user", "ok"),
            (6, "thinking", 1, "assistant", "ok"),
            (7, "text-only", 0, "user", "ok"),
        ]
        conn.execute(
            text(
                "INSERT INTO turn (id, conversation_id, seq, role, status, options, created_at) "
                "VALUES (:id, :c, :seq, :role, :status, '{}', :ts)"
            ),
            [{"id": i, "c": c, "seq": q, "role": r, "status": st, "ts": ts} for i, c, q, r, st in turns],
        )
        parts = [  # (turn, position, kind, image, metadata)
            (1, 0, "image", "a", "{}"),
            (2, 0, "image", "t", thought),
            (2, 1, "image", "b", "{}"),
            (3, 0, "image", "m", marked),
            (3, 1, "image", "k", mask),
            (5, 0, "image", "c", "{}"),
            (6, 0, "image", "d", thought),
            (7, 0, "text", None, "{}"),
        ]
        conn.execute(
            text(
                "INSERT INTO part (turn_id, position, kind, image_sha256, mime_type, provider_metadata) "
                "VALUES (:turn, :position, :kind, :sha, :mime, :meta)"
            ),
            [
                {
                    "turn": t,
                    "position": n,
                    "kind": k,
                    "sha": shas.get(i or ""),
                    "mime": i and "image/png",
                    "meta": m,
                }
                for t, n, k, i, m in parts
            ],
        )

    assert migrate(engine) == ALL[6:]

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, thumbnail_sha256, thumbnail_mime_type FROM conversation"))
        thumbnails = {id_: (sha, mime) for id_, sha, mime in rows}
    with session_scope(engine, read_only=True) as session:
        painted = get_conversation(session=session, conversation_id="painted")
    assert painted is not None and painted.latest_image() is not None
    assert thumbnails == {
        "painted": (painted.latest_image().sha256, "image/png"),
        "thinking": (shas["d"], "image/png"),
        "text-only": (None, None),
    }
    assert thumbnails["painted"][0] == shas["b"]


def test_turn_counts_are_backfilled_from_the_stored_turns(open_engine: Callable[[], Engine]) -> None:
    """Each conversation's count is its next seq (an empty one's is 0), and the next append
    numbers after it."""
    engine = open_engine()
    migrate(engine, until="m008_conversation_thumbnail")
    ts = "2025-12-31 23:00:00.000000"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO conversation (id, title, created_at, updated_at, owner_id) "
                "VALUES (:id, 't', :ts, :ts, 'owner-of-both-conversations')"
            ),
            [{"id": id_, "ts": ts} for id_ in ("three", "empty")],
        )
        conn.execute(
            text(
                "INSERT INTO turn (conversation_id, seq, role, status, options, created_at) "
                "VALUES ('three', :seq, 'user', 'ok', '{}', :ts)"
            ),
            [{"seq": seq, "ts": ts} for seq in range(3)],
        )

    assert migrate(engine) == ALL[8:]

    with engine.connect() as conn:
        counts = dict(conn.execute(text("SELECT id, turn_count FROM conversation")).all())
    assert counts == {"three": 3, "empty": 0}
    with session_scope(engine) as session:
        seq = append_turn(
            session=session,
            conversation_id="three",
            turn=Turn(Role.USER, (TextPart("again"),)),
            now=datetime(2026, 1, 1, tzinfo=UTC),
        )
    assert seq == 3


# Two replicas starting at once on a blank database: each process imports storage, says it is
# ready, and migrates when its standard input says go (both are told together).
_MIGRATE_ON_GO = """
import sys
from storage import make_engine, migrate
print("ready", flush=True)
sys.stdin.readline()
engine = make_engine(sys.argv[1])
migrate(engine)
engine.dispose()
"""
TRIALS = 10


@pytest.mark.system  # processes
def test_two_processes_migrating_a_blank_database_at_once_both_succeed(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """One migrates, the other waits for the lock and finds nothing left to do, 10 times of 10."""
    expected = _expected_schema(database, tmp_path, request)
    if database == "postgresql":
        server = request.getfixturevalue("postgres")
        urls = [server.url(server.fresh_database()) for _ in range(TRIALS)]
    else:
        urls = [sqlite_url(tmp_path / f"trial-{trial}") for trial in range(TRIALS)]

    for trial, url in enumerate(urls):
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", _MIGRATE_ON_GO, url],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for process in processes:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.close()
        ends = [(process.wait(timeout=60), process.stderr.read()) for process in processes if process.stderr]
        assert [code for code, _ in ends] == [0, 0], f"trial {trial}: {[err for _, err in ends]}"

        engine = make_engine(url)
        try:
            assert _schema(engine) == expected, f"trial {trial}"
            with engine.connect() as conn:
                recorded = (
                    conn.execute(text("SELECT name FROM schema_migration ORDER BY name")).scalars().all()
                )
            assert recorded == ALL, f"trial {trial}"
        finally:
            engine.dispose()
