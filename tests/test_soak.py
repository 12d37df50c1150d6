"""Soak: 200 turns from 20 concurrent sessions, 10 % of them with injected faults (loopback only).

Nothing may be lost or duplicated: every session's messages are stored once, in order, each
followed by exactly one answer (an image, a text, or a clear error); SQLite's integrity check
passes; and memory does not keep growing between the first and the second half.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import tracemalloc

import httpx
import pytest
from sqlalchemy import text

from chat.conversation.fallback import FallbackPolicy
from chat.domain import GenerationOptions, Role
from chat.sharing.access import Actor
from tests.fakes import emulator_providers, make_service, migrated_engine, no_sleep

pytestmark = pytest.mark.both_databases

SESSIONS = 20
TURNS_PER_SESSION = 10
FAULTS = [
    "gemini:503",
    "gemini:500",
    "gemini:429",
    "gemini:block",
    "gemini:no_image",
    "openai:503",
    "malformed",
]
OPTIONS = GenerationOptions(model="gemini-3.1-flash-image")


def live_mb(emulator) -> float:
    """Python memory still in use after dropping the emulator's request log (it shares this process).

    tracemalloc counts live objects, not the allocator's high-water mark, so a leak shows and
    fragmentation from earlier tests in the same process does not.
    """
    emulator.clear_requests()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] / 2**20


async def test_two_hundred_turns_twenty_sessions_ten_percent_faults(tmp_path, emulator):
    tracemalloc.start()
    engine = migrated_engine(tmp_path)
    dice = random.Random(7)
    prompts = {
        s: [
            f"session {s} edit {t}" + (f" [fault:{dice.choice(FAULTS)}]" if dice.random() < 0.10 else "")
            for t in range(TURNS_PER_SESSION)
        ]
        for s in range(SESSIONS)
    }
    faulty = sum("[fault:" in p for ps in prompts.values() for p in ps)
    with httpx.Client() as http:
        providers = emulator_providers(http, emulator.url, "k" * 16, timeout_s=20)
        policy = FallbackPolicy(providers, sleep=no_sleep, jitter=lambda d: d)
        service = make_service(tmp_path, policy=policy, engine=engine)

        async def session(index: int, turns: range) -> str | None:
            actor = Actor(f"soak-owner-{index:04d}-xxxxxxxx")
            conversation_id = ids.get(index)
            for turn in turns:
                steps = [
                    step.conversation
                    async for step in service.send(
                        actor, conversation_id, prompts[index][turn], options=OPTIONS
                    )
                ]
                conversation_id = steps[-1].id
            ids[index] = conversation_id
            return conversation_id

        ids: dict[int, str] = {}
        half = TURNS_PER_SESSION // 2
        await asyncio.gather(*(session(s, range(half)) for s in range(SESSIONS)))
        memory_half = live_mb(emulator)
        await asyncio.gather(*(session(s, range(half, TURNS_PER_SESSION)) for s in range(SESSIONS)))
        memory_end = live_mb(emulator)

        outcomes: dict[str, int] = {}
        for s, conversation_id in ids.items():
            conversation = await service.load(Actor(f"soak-owner-{s:04d}-xxxxxxxx"), conversation_id)
            roles = [t.role for t in conversation.turns]
            assert roles == [Role.USER, Role.ASSISTANT] * TURNS_PER_SESSION, (
                f"session {s} lost or doubled a turn"
            )
            assert [t.text() for t in conversation.turns[::2]] == prompts[s]
            for answer in conversation.turns[1::2]:
                kind = answer.error.kind if answer.error else f"ok:{answer.provider}"
                outcomes[kind] = outcomes.get(kind, 0) + 1
                if answer.error:
                    assert "Traceback" not in answer.error.message and answer.error.message
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":  # PostgreSQL has no page-level check to ask for
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        numbering = "SELECT count(*) FROM conversation c WHERE c.turn_count <> (SELECT count(*) FROM turn t WHERE t.conversation_id = c.id) OR c.turn_count <> (SELECT coalesce(max(t.seq) + 1, 0) FROM turn t WHERE t.conversation_id = c.id)"
        assert conn.execute(text(numbering)).scalar() == 0  # turns numbered 0..n-1, no gap, no double
        assert conn.execute(text("SELECT count(*) FROM turn")).scalar() == 2 * SESSIONS * TURNS_PER_SESSION
    logging.getLogger("soak").info(
        "turns=%d faulty_prompts=%d outcomes=%s live_after_100=%.1fMB live_after_200=%.1fMB",
        sum(outcomes.values()),
        faulty,
        dict(sorted(outcomes.items())),
        memory_half,
        memory_end,
    )
    assert sum(outcomes.values()) == SESSIONS * TURNS_PER_SESSION
    assert 10 <= faulty <= 35
    tracemalloc.stop()
    assert memory_end - memory_half < 10, f"memory grew {memory_end - memory_half:.1f} MB in the second half"
