"""Variants: several answers to one message made at once, each a version; "Use this" picks the one
the next edit builds on, and only that one is replayed."""

from __future__ import annotations

import asyncio

import pytest

from chat.conversation.options import parse_options
from chat.domain import GenerationOptions, Role, TextPart, Turn, TurnError, latest_answers, pick_answer
from chat.errors import AccessError, BusyError, InputError, LimitError, UnavailableError
from chat.limits.guard import Guard, Limits
from chat.sharing.access import Actor
from tests.fakes import FakeProvider, last, make_library, make_service, migrated_engine, reply_with_image
from tests.pictures import png

pytestmark = pytest.mark.both_databases

ACTOR = Actor("owner-of-the-variants-1")
FOUR = GenerationOptions(model="gemini-3.1-flash-image", variants=4)
ONE = GenerationOptions(model="gemini-3.1-flash-image")
COLOURS = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0)]


def answer(text: str, *, variant: int | None = None, picked: bool = False) -> Turn:
    return Turn(Role.ASSISTANT, (TextPart(text),), variant=variant, picked=picked)


def failed(variant: int) -> Turn:
    return Turn(Role.ASSISTANT, (), error=TurnError("unavailable", "no"), variant=variant)


USER = Turn(Role.USER, (TextPart("make it red"),))


# --- the model ---------------------------------------------------------------------------------


def test_replay_keeps_the_picked_variant_only_and_the_failed_ones() -> None:
    a, b, c = answer("a", variant=0), failed(1), answer("c", variant=2, picked=True)
    assert latest_answers([USER, a, b, c, USER]) == [USER, b, c, USER]
    assert (
        latest_answers([USER, answer("a", variant=0, picked=True), b, answer("c", variant=2)])[1].text()
        == "a"
    )


def test_answers_stored_before_picks_existed_replay_the_newest_as_before() -> None:
    assert [t.text() for t in latest_answers([USER, answer("old"), answer("new")])] == ["make it red", "new"]


def test_a_pick_moves_within_its_message_only_and_never_to_a_failed_answer() -> None:
    turns = [
        USER,
        answer("x", picked=True),
        USER,
        answer("a", variant=0, picked=True),
        failed(1),
        answer("c", variant=2),
    ]
    picked = pick_answer(turns, 5)
    assert [t.picked for t in picked] == [False, True, False, False, False, True]
    assert [t.text() for t in latest_answers(picked) if t.role is Role.ASSISTANT and not t.failed] == [
        "x",
        "c",
    ]
    with pytest.raises(ValueError):
        pick_answer(turns, 4)
    with pytest.raises(ValueError):
        pick_answer(turns, 0)


def test_the_variants_option_is_a_whole_number_from_one_to_four() -> None:
    assert parse_options({"variants": 4}, default_model="gemini-3.1-flash-image").variants == 4
    assert parse_options({}, default_model="gemini-3.1-flash-image").variants == 1
    for hostile in (0, 5, 2.5, "lots", True, 10**30):
        with pytest.raises(InputError, match="Variants"):
            parse_options({"variants": hostile}, default_model="gemini-3.1-flash-image")


# --- the service -------------------------------------------------------------------------------


async def test_four_variants_run_at_once_are_stored_together_and_the_first_is_picked(tmp_path) -> None:
    provider = FakeProvider()
    provider.gate = asyncio.Event()
    provider.queue = [
        reply_with_image(png(c), text=f"v{n}", signature=f"sig{n}") for n, c in enumerate(COLOURS)
    ]
    service = make_service(tmp_path / "data", provider)
    steps = service.send(ACTOR, None, "a lighthouse", options=FOUR)
    await anext(steps)
    for _ in range(4):  # all four calls are waiting at once: none waits for another to end
        await asyncio.wait_for(provider.entered.get(), 5)
    provider.gate.set()

    answered = await last(steps)

    answers = answered.turns[1:]
    assert [t.variant for t in answers] == [0, 1, 2, 3]
    assert [t.picked for t in answers] == [True, False, False, False]
    assert [t.text() for t in answers] == ["v0", "v1", "v2", "v3"]
    assert answered == await service.load(ACTOR, answered.id)  # one append, as stored


async def test_two_of_four_failing_show_the_two_that_came_and_why_the_others_did_not(tmp_path) -> None:
    provider = FakeProvider()
    provider.gate = asyncio.Event()
    provider.queue = [
        UnavailableError("gemini", "503 UNAVAILABLE"),
        reply_with_image(png(COLOURS[1])),
        UnavailableError("gemini", "503 UNAVAILABLE"),
        reply_with_image(png(COLOURS[3])),
    ]
    service = make_service(tmp_path / "data", provider)
    steps = service.send(ACTOR, None, "a lighthouse", options=FOUR)
    await anext(steps)
    provider.gate.set()

    answers = (await last(steps)).turns[1:]

    assert [t.failed for t in answers] == [True, False, True, False]
    assert [t.picked for t in answers] == [False, True, False, False]  # the first that came
    assert all("Gemini" in t.error.message for t in answers if t.error)


async def test_stop_stops_every_variant(tmp_path) -> None:
    provider = FakeProvider()
    provider.gate = asyncio.Event()
    service = make_service(tmp_path / "data", provider)
    steps = service.send(ACTOR, None, "a lighthouse", options=FOUR)
    conversation_id = (await anext(steps)).conversation.id
    for _ in range(4):
        await provider.entered.get()

    stopped = await service.stop(ACTOR, conversation_id)

    answers = stopped.conversation.turns[1:]
    assert [(t.variant, t.error.kind if t.error else None) for t in answers] == [
        (n, "stopped") for n in range(4)
    ]
    assert service.running == 0


async def test_use_this_makes_the_next_edit_replay_that_variant_only(tmp_path) -> None:
    provider = FakeProvider()
    provider.queue = [
        reply_with_image(png(c), text=f"v{n}", signature=f"sig{n}") for n, c in enumerate(COLOURS)
    ]
    service = make_service(tmp_path / "data", provider)
    conversation = await last(service.send(ACTOR, None, "a lighthouse", options=FOUR))

    picked = await service.pick(ACTOR, conversation.id, 3)  # v1c

    assert [t.picked for t in picked.conversation.turns[1:]] == [False, False, True, False]
    assert picked.conversation == await service.load(ACTOR, conversation.id)
    provider.queue = [reply_with_image(png((9, 9, 9)))]
    await last(service.send(ACTOR, conversation.id, "now darker", options=ONE))
    replayed = [t for t in latest_answers(provider.calls[-1]) if t.role is Role.ASSISTANT]
    assert [t.text() for t in replayed] == ["v2"]
    assert replayed[0].images()[0].provider_metadata == {"gemini": {"thoughtSignature": "sig2"}}


async def test_a_pick_on_another_replica_is_seen_by_the_next_turn_here(tmp_path) -> None:
    engine = migrated_engine(tmp_path / "data")
    provider = FakeProvider()
    provider.queue = [reply_with_image(png(c), text=f"v{n}") for n, c in enumerate(COLOURS)]
    here = make_service(tmp_path / "data", provider, engine=engine)
    there = make_service(tmp_path / "data", FakeProvider(), engine=engine)
    conversation = await last(here.send(ACTOR, None, "a lighthouse", options=FOUR))

    await there.pick(ACTOR, conversation.id, 2)  # same turns, a new revision

    provider.queue = [reply_with_image(png((9, 9, 9)))]
    await last(here.send(ACTOR, conversation.id, "now darker", options=ONE))
    assert [t.text() for t in latest_answers(provider.calls[-1]) if t.role is Role.ASSISTANT] == ["v1"]


async def test_a_pick_is_refused_while_a_turn_runs_for_a_failed_variant_and_for_a_read_only_link(
    tmp_path,
) -> None:
    engine = migrated_engine(tmp_path / "data")
    provider = FakeProvider()
    provider.queue = [UnavailableError("gemini", "503"), reply_with_image(png(COLOURS[1]))]
    service = make_service(tmp_path / "data", provider, engine=engine)
    library = make_library(tmp_path / "data", engine, service)
    conversation = await last(
        service.send(ACTOR, None, "a lighthouse", options=GenerationOptions(model="m", variants=2))
    )

    with pytest.raises(InputError, match="failed"):
        await service.pick(ACTOR, conversation.id, 1)
    with pytest.raises(InputError, match="no such version"):
        await service.pick(ACTOR, conversation.id, 7)
    view = await library.share(ACTOR, conversation.id, "view")
    with pytest.raises(AccessError):
        await service.pick(Actor(None, view.token), conversation.id, 2)
    stranger = Actor("someone-else-entirely-1")
    with pytest.raises(AccessError):
        await service.pick(stranger, conversation.id, 2)

    provider.gate = asyncio.Event()
    provider.queue = [reply_with_image(png((9, 9, 9)))]
    steps = service.retry(ACTOR, conversation.id, options=ONE)
    await anext(steps)
    await provider.entered.get()
    with pytest.raises(BusyError):
        await service.pick(ACTOR, conversation.id, 2)
    provider.gate.set()
    await last(steps)
    assert (await service.pick(ACTOR, conversation.id, 2)).conversation.turns[2].picked


async def test_variants_cost_n_times_against_the_budget_and_n_turns_against_the_rate_limit(tmp_path) -> None:
    engine = migrated_engine(tmp_path / "data")
    provider = FakeProvider()
    guard = Guard(Limits(per_visitor_per_minute=5, daily_spend_usd=100.0), engine=engine)
    service = make_service(tmp_path / "data", provider, engine=engine, guard=guard)
    budget = GenerationOptions(model="m", variants=4, budget_usd=0.5)  # one call costs up to 0.10 here
    assert service.worst_case(FOUR) == 4 * service.worst_case(ONE) > 0  # what the page shows before sending

    with pytest.raises(InputError, match=r"4 variants\) could cost up to \$0\.40"):
        await last(
            service.send(
                ACTOR, None, "a lighthouse", options=GenerationOptions(model="m", variants=4, budget_usd=0.3)
            )
        )
    provider.queue = [reply_with_image(png(c)) for c in COLOURS]
    conversation = await last(service.send(ACTOR, None, "a lighthouse", options=budget))
    assert len(conversation.turns) == 5

    with pytest.raises(LimitError, match="4 variants count as 4 edits"):  # 4 of 5 used: 4 more do not fit
        await last(service.retry(ACTOR, conversation.id, options=FOUR))
    provider.queue = [reply_with_image(png((9, 9, 9)))]
    await last(service.retry(ACTOR, conversation.id, options=ONE))  # the fifth fits


async def test_edit_from_here_on_a_variant_builds_on_it_and_an_export_keeps_every_variant(tmp_path) -> None:
    engine = migrated_engine(tmp_path / "data")
    provider = FakeProvider()
    provider.queue = [
        reply_with_image(png(c), text=f"v{n}", signature=f"sig{n}") for n, c in enumerate(COLOURS)
    ]
    service = make_service(tmp_path / "data", provider, engine=engine)
    library = make_library(tmp_path / "data", engine, service)
    conversation = await last(service.send(ACTOR, None, "a lighthouse", options=FOUR))
    await service.pick(ACTOR, conversation.id, 2)

    fork = await library.fork(ACTOR, conversation.id, through_seq=3)  # from v1c
    assert [(t.variant, t.picked) for t in fork.turns[1:]] == [(0, False), (1, False), (2, True)]

    _, data = await library.export(ACTOR, conversation.id)
    imported = await library.import_zip(ACTOR, data)
    assert [(t.variant, t.picked) for t in imported.turns] == [
        (t.variant, t.picked) for t in conversation.turns[:1]
    ] + [
        (0, False),
        (1, True),
        (2, False),
        (3, False),
    ]
    assert [t.text() for t in latest_answers(imported.turns) if t.role is Role.ASSISTANT] == ["v1"]


async def test_the_daily_spend_cap_reserves_every_variants_worst_case(tmp_path) -> None:
    engine = migrated_engine(tmp_path / "data")
    provider = FakeProvider()
    guard = Guard(Limits(daily_spend_usd=0.35), engine=engine)  # one call's worst case here is 0.10
    service = make_service(tmp_path / "data", provider, engine=engine, guard=guard)

    with pytest.raises(LimitError, match="today's budget"):
        await last(service.send(ACTOR, None, "a lighthouse", options=FOUR))
    provider.queue = [reply_with_image(png(c)) for c in COLOURS[:3]]
    three = await last(
        service.send(ACTOR, None, "a lighthouse", options=GenerationOptions(model="m", variants=3))
    )
    assert len(three.turns) == 4
