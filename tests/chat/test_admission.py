"""Admission: the conversation's budget first, then the visitor's limits; decided before anything is stored.
What a turn reserves against the daily cap is settled by its answer, or released if it has none."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from chat.conversation.fallback import FallbackPolicy
from chat.conversation.service import ChatService
from chat.domain import Conversation, GenerationOptions, ProviderReply, Usage
from chat.errors import InputError, LimitError, UnavailableError
from chat.limits.admission import Admission
from chat.limits.guard import Guard, Limits
from chat.sharing.access import Actor
from storage import session_scope
from storage.models import ConversationRow, SpendReservationRow
from tests.fakes import FakeProvider, collect, last, make_service, migrated_engine, reply_with_image
from tests.pictures import png

pytestmark = pytest.mark.both_databases

ACTOR = Actor("owner-of-the-admission-tests")
OPTIONS = GenerationOptions(model="gemini-3.1-flash-image")


def admission() -> Admission:
    return Admission(
        FallbackPolicy({"gemini": FakeProvider()})
    )  # its worst case: $0.05 per input image + $0.05


def test_a_turn_whose_worst_case_would_pass_the_budget_is_refused_with_the_figures() -> None:
    tight = GenerationOptions(model=OPTIONS.model, budget_usd=1.00)

    admission().admit(ACTOR, tight, {}, input_images=1, spent=0.90)  # 0.90 + 0.10 is not past 1.00
    with pytest.raises(InputError, match=r"cost \u2248 \$0\.91 of its \$1\.00 budget.*up to \$0\.10"):
        admission().admit(ACTOR, tight, {}, input_images=1, spent=0.91)


def test_without_a_budget_only_the_limits_decide() -> None:
    admission().admit(ACTOR, OPTIONS, {}, input_images=6, spent=1000.0)


async def test_a_new_conversations_first_turn_is_held_to_its_budget_and_nothing_is_stored(tmp_path) -> None:
    provider = FakeProvider()
    engine = migrated_engine(tmp_path / "data")
    service = make_service(tmp_path / "data", provider, engine=engine)
    tiny = GenerationOptions(model=OPTIONS.model, budget_usd=0.01)

    with pytest.raises(InputError, match="budget"):
        await collect(service.send(ACTOR, None, "a lighthouse", options=tiny))

    assert provider.calls == []
    with session_scope(engine, read_only=True) as session:
        assert session.exec(select(ConversationRow)).all() == []


# --- the daily cap's reservations, through the service ---------------------------------------


class CostlyProvider(FakeProvider):
    """A provider whose turns may cost $0.15 and cost $0.04."""

    def worst_case_cost(self, options: GenerationOptions, *, input_images: int) -> float:
        return 0.15


def costly_reply() -> ProviderReply:
    return replace(
        reply_with_image(png((4, 4, 4))), usage=Usage(input_tokens=200, image_tokens=1000, cost_usd=0.04)
    )


def capped(data_dir: Path, provider: FakeProvider, engine: Engine) -> ChatService:
    """A replica on ``engine`` with a $1 daily cap on the server's keys."""
    return make_service(
        data_dir, provider, engine=engine, guard=Guard(Limits(daily_spend_usd=1.0), engine=engine)
    )


def reservations(engine: Engine) -> int:
    with session_scope(engine, read_only=True) as session:
        return len(session.exec(select(SpendReservationRow)).all())


def spent(engine: Engine) -> float:
    return Guard(Limits(), engine=engine).spent_today()


async def test_twelve_sends_through_two_replicas_admit_what_the_cap_allows_and_spend_what_they_cost(
    tmp_path,
) -> None:
    provider = CostlyProvider()
    provider.gate = asyncio.Event()  # every admitted turn is in flight before any is answered
    provider.queue = [costly_reply() for _ in range(12)]
    engines = [migrated_engine(tmp_path / "data") for _ in range(2)]
    replicas = [capped(tmp_path / "data", provider, engine) for engine in engines]
    admissions: asyncio.Queue[bool] = asyncio.Queue()

    async def sender(n: int) -> Conversation | None:
        steps = replicas[n % 2].send(Actor(f"sender-{n:02d}-of-the-cap"), None, f"edit {n}", options=OPTIONS)
        try:
            await anext(steps)  # the message is stored: the turn was admitted
        except LimitError as refused:
            assert "today's budget for its own API keys ($1.00)" in str(refused)
            admissions.put_nowait(False)
            return None
        admissions.put_nowait(True)
        return cast(Conversation, await last(steps))

    senders = [asyncio.create_task(sender(n)) for n in range(12)]
    admitted = [await admissions.get() for _ in senders].count(True)
    provider.gate.set()
    answered = [c for c in await asyncio.gather(*senders) if c is not None]

    assert admitted == len(answered) == 6  # 6 x $0.15 fit in $1, a 7th would not
    assert spent(engines[0]) == pytest.approx(sum(c.cost_usd() for c in answered), abs=1e-9) == 0.24
    assert reservations(engines[1]) == 0


async def test_a_failed_turn_settles_its_reservation_at_nothing(tmp_path) -> None:
    provider = CostlyProvider()
    provider.queue = [UnavailableError("gemini", "overloaded")]
    engine = migrated_engine(tmp_path / "data")

    done = await last(
        capped(tmp_path / "data", provider, engine).send(ACTOR, None, "a lighthouse", options=OPTIONS)
    )

    assert done.turns[-1].error is not None
    assert (reservations(engine), spent(engine)) == (0, 0.0)


async def test_a_turn_whose_page_went_away_still_settles_its_reservation_at_its_cost(tmp_path) -> None:
    provider = CostlyProvider()
    provider.gate = asyncio.Event()
    provider.queue = [costly_reply()]
    engine = migrated_engine(tmp_path / "data")
    service = capped(tmp_path / "data", provider, engine)

    steps = service.send(ACTOR, None, "a lighthouse", options=OPTIONS)
    await anext(steps)
    assert reservations(engine) == 1
    await steps.aclose()  # the visitor left while the provider was being asked: the turn goes on
    provider.gate.set()
    await service.finish_running()
    assert (reservations(engine), spent(engine)) == (0, pytest.approx(0.04))


async def test_a_stopped_turn_counts_what_it_reserved_and_a_refused_one_releases_it(tmp_path) -> None:
    provider = CostlyProvider()
    provider.gate = asyncio.Event()  # never set: the call runs until it is stopped
    engine = migrated_engine(tmp_path / "data")
    service = capped(tmp_path / "data", provider, engine)

    steps = service.send(ACTOR, None, "a lighthouse", options=OPTIONS)
    stored = (await anext(steps)).conversation
    await provider.entered.get()
    stopped = await service.stop(ACTOR, stored.id)
    assert stopped.conversation.turns[-1].error is not None
    assert stopped.conversation.turns[-1].error.kind == "stopped"
    # The call may have been billed for what it made before it was ended: the cap counts its worst case.
    assert (reservations(engine), spent(engine)) == (0, pytest.approx(0.15))

    with pytest.raises(InputError, match="no image to paint on"):
        await collect(service.send(ACTOR, None, "here", options=OPTIONS, painted=png((255, 255, 255))))
    assert (reservations(engine), spent(engine), len(provider.calls)) == (0, pytest.approx(0.15), 1)
