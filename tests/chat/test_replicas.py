"""Two replicas: two services on two engines on one database (and one image store), one
conversation. Turns never interleave, a waiting turn sees the turn before it whoever wrote it, a
dead replica's turn reads as in progress until its lease expires, and no copy kept in memory
replays a stale history or budget."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from chat.conversation.leases import Leases
from chat.conversation.service import ChatService
from chat.domain import GenerationOptions, ImagePart, ProgressSink, ProviderReply, Role, TextPart, Turn, Usage
from chat.errors import InputError
from chat.limits.guard import Guard, Limits
from chat.sharing.access import Actor
from storage import repository as repo
from storage import session_scope
from tests.fakes import FakeProvider, UTCClock, collect, make_service, migrated_engine, reply_with_image
from tests.pictures import png

pytestmark = pytest.mark.both_databases

OPTIONS = GenerationOptions(model="gemini-3.1-flash-image")
ACTOR = Actor("owner-of-the-shared-conversation")
TTL_S = 30.0


async def polls_at_once(seconds: float) -> None:
    """A waiting replica tries again at once (turning the event loop); renewals, every third of
    the ttl, never come due within these tests."""
    if seconds >= TTL_S / 3:
        await asyncio.Event().wait()
    await asyncio.sleep(0)


class OneCallAtATime:
    """A provider whose calls wait until the test answers them, one by one, recording each
    history and how many calls were ever in flight at once."""

    name = "gemini"
    configured = True

    def __init__(self) -> None:
        self.calls: list[list[Turn]] = []
        self.waiting: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()
        self.in_flight = 0
        self.most_in_flight = 0

    def model_for(self, options: GenerationOptions) -> str:
        return options.model

    def worst_case_cost(self, options: GenerationOptions, *, input_images: int) -> float:
        return 0.0

    async def reply(
        self,
        history: Sequence[Turn],
        options: GenerationOptions,
        load_image: Callable[[ImagePart], bytes],
        *,
        api_key: SecretStr | None = None,
        progress: ProgressSink | None = None,
    ) -> ProviderReply:
        self.calls.append(list(history))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        answered = asyncio.get_running_loop().create_future()
        self.waiting.put_nowait(answered)
        try:
            await answered
        finally:
            self.in_flight -= 1
        return reply_with_image(png((7, 7, 7)), text=f"answer to {history[-1].text()}")

    async def answer(self, calls: int) -> None:
        for _ in range(calls):
            answered = await asyncio.wait_for(self.waiting.get(), timeout=30)
            answered.set_result(None)


@pytest.fixture
def engines(tmp_path: Path):
    pair = [migrated_engine(tmp_path), migrated_engine(tmp_path)]
    yield pair
    for engine in pair:
        engine.dispose()


def replicas(
    data_dir: Path, engines: list[Engine], provider: object, clock: UTCClock | None = None
) -> list[ChatService]:
    """A service per engine, on the one data directory; turns' times and leases on ``clock`` if given."""
    timed = {"clock": clock} if clock is not None else {}
    return [
        make_service(
            data_dir,
            provider,
            engine=engine,
            leases=Leases(engine, ttl_s=TTL_S, sleep=polls_at_once, **timed),
            **timed,
        )
        for engine in engines
    ]


def alternates(turns: Sequence[Turn]) -> bool:
    return all(turn.role is (Role.USER if i % 2 == 0 else Role.ASSISTANT) for i, turn in enumerate(turns))


async def test_six_senders_through_two_replicas_take_turns_one_at_a_time(tmp_path, engines):
    provider = OneCallAtATime()
    services = replicas(tmp_path, engines, provider)
    answering = asyncio.create_task(provider.answer(1 + 6 * 2))
    *_, start = await collect(services[0].send(ACTOR, None, "a street at night", options=OPTIONS))

    async def sender(n: int) -> None:
        service = services[n % 2]  # half through each replica
        for m in range(2):
            await collect(service.send(ACTOR, start.id, f"sender {n} message {m}", options=OPTIONS))

    await asyncio.gather(*(sender(n) for n in range(6)))
    await asyncio.wait_for(answering, timeout=30)

    stored = await services[1].load(ACTOR, start.id)
    assert len(stored.turns) == 2 + 6 * 2 * 2 and alternates(stored.turns)
    for asked, answer in zip(stored.turns[::2], stored.turns[1::2], strict=True):
        assert answer.text() == f"answer to {asked.text()}"  # each answer follows its own message
    # Every request carried the whole history before it, answered, and only its own new message.
    assert provider.most_in_flight == 1
    assert [len(call) for call in provider.calls] == list(range(1, 2 * 13, 2))
    assert all(alternates(call) for call in provider.calls)
    messages = [f"sender {n} message {m}" for n in range(6) for m in range(2)]
    assert sorted(call[-1].text() for call in provider.calls[1:]) == sorted(messages)


async def test_a_dead_replicas_turn_is_in_progress_until_its_lease_expires_then_retried(tmp_path, engines):
    clock, provider = UTCClock(), FakeProvider()
    survivor = replicas(tmp_path, engines, provider, clock)[1]
    provider.queue += [reply_with_image(png((1, 1, 1))), reply_with_image(png((2, 2, 2)))]
    *_, start = await collect(survivor.send(ACTOR, None, "a cat", options=OPTIONS))
    with session_scope(engines[0]) as session:  # the other replica stored a message, took the lease, died
        message = Turn(Role.USER, (TextPart("make it orange"),), created_at=clock())
        repo.append_turn(session=session, conversation_id=start.id, turn=message, now=clock())
        expires = clock() + timedelta(seconds=TTL_S)
        repo.acquire_lease(
            session=session, conversation_id=start.id, holder="dead", now=clock(), expires_at=expires
        )

    opened = await survivor.open(ACTOR, start.id)
    assert opened.answering and opened.conversation.turns[-1].text() == "make it orange"
    clock.advance(TTL_S)
    opened = await survivor.open(ACTOR, start.id)
    assert not opened.answering  # shown as interrupted: press Retry

    steps = [step async for step in survivor.retry(ACTOR, start.id, options=OPTIONS)]
    assert [step.answering for step in steps] == [True, False]
    assert [t.text() for t in provider.calls[-1] if t.role is Role.USER] == ["a cat", "make it orange"]
    assert [t.role for t in steps[-1].conversation.turns] == [
        Role.USER,
        Role.ASSISTANT,
        Role.USER,
        Role.ASSISTANT,
    ]


async def test_a_replicas_copy_in_memory_is_checked_under_the_lease(tmp_path, engines):
    """A wrote the conversation last and keeps it; B appends; A's retry, send and budget see B's turn."""
    provider = FakeProvider()
    a, b = replicas(tmp_path, engines, provider)
    priced = replace(reply_with_image(png((3, 3, 3))), usage=Usage(image_tokens=1000, cost_usd=0.40))
    provider.queue += [reply_with_image(png((1, 1, 1))), priced, reply_with_image(png((4, 4, 4)))]
    *_, start = await collect(a.send(ACTOR, None, "a cat", options=OPTIONS))
    await collect(b.send(ACTOR, start.id, "make it orange", options=OPTIONS))

    # B's answer cost $0.40, and the next edit could cost $0.10 more: over a $0.45 budget, though
    # A's own copy has cost nothing.
    budget = GenerationOptions(model=OPTIONS.model, budget_usd=0.45)
    with pytest.raises(InputError, match=r"\$0\.40 of its \$0\.45 budget"):
        await collect(a.send(ACTOR, start.id, "now blue", options=budget))

    *_, retried = await collect(a.retry(ACTOR, start.id, options=OPTIONS))
    assert [t.text() for t in provider.calls[-1] if t.role is Role.USER] == ["a cat", "make it orange"]
    assert len(retried.turns) == 5 and retried == await b.load(ACTOR, start.id)


async def test_an_answer_after_the_lease_was_lost_is_not_put_after_another_replicas_turn(tmp_path, engines):
    clock, provider = UTCClock(), FakeProvider()
    guard = Guard(Limits(daily_spend_usd=10.0), engine=engines[0])
    a = make_service(
        tmp_path,
        provider,
        engine=engines[0],
        clock=clock,
        guard=guard,
        leases=Leases(engines[0], ttl_s=TTL_S, clock=clock, sleep=polls_at_once),
    )
    priced = replace(reply_with_image(png((3, 3, 3))), usage=Usage(image_tokens=1000, cost_usd=0.40))
    provider.queue += [reply_with_image(png((1, 1, 1))), priced]
    *_, start = await collect(a.send(ACTOR, None, "a cat", options=OPTIONS))
    provider.gate = asyncio.Event()
    sending = asyncio.create_task(collect(a.send(ACTOR, start.id, "make it orange", options=OPTIONS)))
    await asyncio.wait_for(provider.entered.get(), timeout=10)
    await asyncio.wait_for(provider.entered.get(), timeout=10)  # A's call is at the provider
    clock.advance(TTL_S + 1)  # A stalled past its lease (no renewal came due), and B took it over
    with session_scope(engines[1]) as session:
        expires = clock() + timedelta(seconds=TTL_S)
        assert repo.acquire_lease(
            session=session, conversation_id=start.id, holder="b", now=clock(), expires_at=expires
        )
        mine = Turn(Role.USER, (TextPart("B's message"),), created_at=clock())
        repo.append_turn(session=session, conversation_id=start.id, turn=mine, now=clock())
    provider.gate.set()
    *_, shown = await asyncio.wait_for(sending, timeout=10)

    texts = [t.text() for t in shown.turns]
    assert texts == ["a cat", "Done.", "make it orange", "B's message"]  # A's answer left out
    assert shown == (await a.open(ACTOR, start.id)).conversation  # as stored, to be shown
    assert (await a.open(ACTOR, start.id)).answering  # B's turn is the one in progress
    assert guard.spent_today() == pytest.approx(0.40)  # paid for, so counted, though not stored
