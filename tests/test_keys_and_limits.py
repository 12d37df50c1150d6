"""Bring-your-own-key isolation, secrecy of keys, and the daily spend cap through the real clients
(the guard's own limits: tests/chat/test_guard.py)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from pydantic import SecretStr

from chat.conversation.fallback import FallbackPolicy
from chat.conversation.service import ChatService
from chat.domain import GenerationOptions
from chat.errors import LimitError
from chat.limits.guard import Guard, Limits
from chat.providers.gemini import GeminiClient
from chat.sharing.access import Actor
from tests.fakes import emulator_providers, last, make_library, make_service, migrated_engine

OPTIONS = GenerationOptions(model="gemini-3.1-flash-image")
SERVER_KEY = "server-key-0123456789-SERVER"
ALICE_KEY = "alice-own-key-ABCDEFGHIJ-alice"
BOB_KEY = "bob-own-key-KLMNOPQRSTU-bob"


@pytest.fixture
def engine(tmp_path):
    return migrated_engine(tmp_path)


@pytest.fixture
async def service(tmp_path, engine, emulator):
    with httpx.Client() as http:
        policy = FallbackPolicy(emulator_providers(http, emulator.url, SERVER_KEY))
        yield make_service(tmp_path, policy=policy, engine=engine)


async def test_each_visitors_calls_carry_their_own_key(service, emulator):
    async def session(owner: str, key: str, prompt: str):
        return await last(
            service.send(Actor(owner), None, prompt, options=OPTIONS, keys={"gemini": SecretStr(key)})
        )

    await asyncio.gather(
        session("alice-" + "a" * 20, ALICE_KEY, "alice's lighthouse"),
        session("bob-" + "b" * 20, BOB_KEY, "bob's bicycle"),
        last(service.send(Actor("carol-" + "c" * 20), None, "carol's cat", options=OPTIONS)),
    )
    seen = {
        r["body"]["contents"][-1]["parts"][-1]["text"]: r["headers"]["x-goog-api-key"]
        for r in emulator.requests()
    }
    assert seen == {"alice's lighthouse": ALICE_KEY, "bob's bicycle": BOB_KEY, "carol's cat": SERVER_KEY}


async def test_keys_never_reach_the_database_logs_or_exports(service, engine, tmp_path, emulator, caplog):
    caplog.set_level(logging.DEBUG)
    owner = Actor("alice-" + "a" * 20)
    done = await last(
        service.send(owner, None, "a lighthouse", options=OPTIONS, keys={"gemini": SecretStr(ALICE_KEY)})
    )
    emulator.queue_faults("gemini:503", "gemini:503", "gemini:503")
    await last(service.send(owner, done.id, "warmer", options=OPTIONS, keys={"openai": SecretStr(BOB_KEY)}))
    library = make_library(tmp_path, engine, service)
    _, exported = await library.export(owner, done.id)
    link = await library.share(owner, done.id, "view")
    shared_view = repr(await service.load(Actor("mate-" + "m" * 20, link.token), done.id))

    stored = b"".join(p.read_bytes() for p in tmp_path.glob("retouch.sqlite3*"))
    for secret in (SERVER_KEY, ALICE_KEY, BOB_KEY):
        assert secret.encode() not in stored
        assert secret not in caplog.text
        assert secret.encode() not in exported
        assert secret not in shared_view
    assert '"event": "turn"' in caplog.text  # the structured line is there, without any key


def guarded_service(
    tmp_path, engine, emulator, http: httpx.Client, daily_spend_usd: float
) -> tuple[ChatService, Guard]:
    """Gemini on the server's key behind a daily spend cap."""
    gemini = GeminiClient(http, api_key=SecretStr(SERVER_KEY), base_url=emulator.url)
    guard = Guard(Limits(daily_spend_usd=daily_spend_usd), engine=engine)
    service = make_service(tmp_path, policy=FallbackPolicy({"gemini": gemini}), engine=engine, guard=guard)
    return service, guard


async def test_limits_refuse_before_anything_is_stored_or_sent(tmp_path, engine, emulator):
    with httpx.Client() as http:
        service, guard = guarded_service(tmp_path, engine, emulator, http, daily_spend_usd=0.01)
        with pytest.raises(LimitError, match="today's budget"):
            await last(service.send(Actor("x" * 20), None, "a lighthouse", options=OPTIONS))
        assert emulator.requests() == []
        own = {"gemini": SecretStr(ALICE_KEY), "openai": SecretStr(BOB_KEY)}
        done = await last(service.send(Actor("x" * 20), None, "a lighthouse", options=OPTIONS, keys=own))
        assert done.turns[-1].attempts[-1].paid_by == "visitor"
        assert guard.spent_today() == 0


async def test_an_answer_on_the_server_key_and_its_cost_are_stored_together(tmp_path, engine, emulator):
    with httpx.Client() as http:
        service, guard = guarded_service(tmp_path, engine, emulator, http, daily_spend_usd=5.0)
        done = await last(service.send(Actor("x" * 20), None, "a lighthouse", options=OPTIONS))
    answer = done.turns[-1]
    assert answer.attempts[-1].paid_by == "server" and answer.cost_usd
    assert guard.spent_today() == pytest.approx(answer.cost_usd)
