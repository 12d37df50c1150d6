"""The lease service on a clock moved by hand and sleeps the test wakes: who waits, for how long,
and what happens when a holder dies, renews, fails or loses its lease. Two ``Leases`` on two
engines are two replicas."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from chat.conversation.leases import Lease, Leases
from chat.errors import AccessError
from storage import create_conversation, session_scope
from storage import repository as repo
from tests.fakes import ParkedSleeps, UTCClock, migrated_engine

pytestmark = pytest.mark.both_databases

CID = "leased"
TTL_S = 30.0
OWNER = "owner-of-the-leased-conversation"


@pytest.fixture
def clock() -> UTCClock:
    return UTCClock()


@pytest.fixture
def engines(tmp_path: Path, clock: UTCClock):
    """Two engines on one database (two replicas), with one conversation in it."""
    pair = [migrated_engine(tmp_path), migrated_engine(tmp_path)]
    with session_scope(pair[0]) as session:
        create_conversation(session=session, conversation_id=CID, title="t", now=clock(), owner_id=OWNER)
    yield pair
    for engine in pair:
        engine.dispose()


def replica(engine: Engine, clock: UTCClock) -> tuple[Leases, ParkedSleeps]:
    sleeps = ParkedSleeps()
    return Leases(engine, ttl_s=TTL_S, clock=clock, sleep=sleeps.sleep), sleeps


def allowed(session: Session) -> str:
    return "may write"


def refused(session: Session) -> str:
    raise AccessError("This is a read-only view.")


async def take(leases: Leases) -> Lease[str]:
    """Wait for the lease, and give it up at once."""
    async with leases.hold(CID, allowed) as lease:
        return lease


def live(engine: Engine, clock: UTCClock, conversation_id: str = CID) -> bool:
    with session_scope(engine, read_only=True) as session:
        return bool(repo.live_leases(session=session, conversation_ids=[conversation_id], now=clock()))


def take_over(engine: Engine, clock: UTCClock, holder: str) -> bool:
    """What another replica (or one that dies at once) does: take the lease, for a ttl."""
    with session_scope(engine) as session:
        return repo.acquire_lease(
            session=session,
            conversation_id=CID,
            holder=holder,
            now=clock(),
            expires_at=clock() + timedelta(seconds=TTL_S),
        )


async def eventually(condition: Callable[[], bool]) -> None:
    """Until ``condition`` holds (a worker thread is finishing), turning the event loop only."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0)


async def test_a_second_replica_waits_with_growing_pauses_and_gets_it_once_given_up(engines, clock):
    (a, _), (b, b_sleeps) = replica(engines[0], clock), replica(engines[1], clock)
    async with a.hold(CID, allowed) as held:
        assert (held.checked, held.turn_count) == ("may write", 0)
        waiting = asyncio.create_task(take(b))
        for _ in range(6):
            await b_sleeps.wake(clock)  # one more try each, refused while a holds it
        _, seventh_pause_ends = await b_sleeps.next()
        assert b_sleeps.slept == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
        assert not waiting.done() and live(engines[1], clock)
    assert not live(engines[1], clock)  # given up on the way out
    seventh_pause_ends()  # b tries again
    lease = await asyncio.wait_for(waiting, timeout=10)
    assert lease.holder != held.holder and lease.turn_count == 0


async def test_the_lease_of_a_replica_that_died_is_taken_over_once_it_expires(engines, clock):
    assert take_over(engines[0], clock, "died-holding-it")
    b, sleeps = replica(engines[1], clock)
    waiting = asyncio.create_task(take(b))
    waited = 0.0
    while waited < TTL_S:
        assert not waiting.done()
        waited += await sleeps.wake(clock)
    lease = await asyncio.wait_for(waiting, timeout=10)
    assert TTL_S <= waited < TTL_S + 0.5 and lease.checked == "may write"


async def test_renewals_keep_the_lease_past_its_first_expiry(engines, clock):
    (a, a_sleeps) = replica(engines[0], clock)
    async with a.hold(CID, allowed) as held:
        for _ in range(4):
            assert await a_sleeps.wake(clock) == TTL_S / 3  # a renewal, every third of the ttl
        await a_sleeps.next()  # the fourth renewal is done: the next pause has begun
        assert not take_over(engines[1], clock, "another replica")  # 40 s in, still a's
        assert live(engines[1], clock) and not held.lost


async def test_an_error_or_a_cancellation_inside_gives_the_lease_up(engines, clock):
    a, _ = replica(engines[0], clock)
    with pytest.raises(RuntimeError):
        async with a.hold(CID, allowed):
            assert live(engines[0], clock)
            raise RuntimeError("the turn failed")
    assert not live(engines[0], clock)

    holding = asyncio.Event()

    async def hold_until_cancelled() -> None:
        async with a.hold(CID, allowed):
            holding.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold_until_cancelled())
    await asyncio.wait_for(holding.wait(), timeout=10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert not live(engines[0], clock)


async def test_a_refused_check_waits_for_nothing_and_takes_nothing(engines, clock):
    (a, _), (b, b_sleeps) = replica(engines[0], clock), replica(engines[1], clock)
    async with a.hold(CID, allowed):
        with pytest.raises(AccessError):
            async with b.hold(CID, refused):
                pytest.fail("refused, yet held")
    assert b_sleeps.slept == [] and not live(engines[0], clock)


async def test_a_lease_lost_after_expiry_is_logged_and_renewed_no_more(engines, clock, caplog):
    (a, a_sleeps) = replica(engines[0], clock)
    with caplog.at_level(logging.WARNING, logger="retouch.leases"):
        async with a.hold(CID, allowed) as held:
            clock.advance(TTL_S + 1)  # a stalled past its lease, and another replica took it
            assert take_over(engines[1], clock, "the next turn")
            seconds, renew = await a_sleeps.next()
            renew()
            await eventually(lambda: held.lost)
        assert a_sleeps.parked.empty()  # no renewal after that
    assert "lost the lease on conversation leased" in caplog.text
    assert live(engines[1], clock)  # giving up touched the new holder's lease not at all
    assert not take_over(engines[0], clock, "a third")


async def test_a_new_conversations_lease_is_claimed_by_the_write_that_creates_it(engines, clock):
    a, a_sleeps = replica(engines[0], clock)
    async with a.hold_new("fresh", "its creator") as lease:
        assert not lease.taken and lease.checked == "its creator"
        await a_sleeps.wake(clock)  # a renewal before the claim renews nothing, and loses nothing
        await a_sleeps.next()
        assert not lease.lost
        with session_scope(engines[0]) as session:
            create_conversation(
                session=session, conversation_id="fresh", title="t", now=clock(), owner_id=OWNER
            )
            lease.claim(session)
        assert lease.taken and live(engines[1], clock, "fresh")
        with session_scope(engines[0]) as session:
            lease.release(session)  # as the write that stores the answer does
        assert not live(engines[1], clock, "fresh")
    assert not live(engines[1], clock, "fresh")


async def test_a_waiter_that_goes_away_mid_try_leaves_no_lease_behind(engines, clock, monkeypatch):
    """A closed page cancels a turn while its try for the lease runs in a worker thread: if that
    try took the lease, it is given up, rather than holding the conversation a ttl for nobody."""
    a, _ = replica(engines[0], clock)
    checking, go_on, tried = threading.Event(), threading.Event(), threading.Event()
    one_try = a._try

    def try_and_tell(*args: Any) -> Any:
        try:
            return one_try(*args)
        finally:
            tried.set()  # committed: the lease is taken

    monkeypatch.setattr(a, "_try", try_and_tell)

    def slow_check(session: Session) -> str:
        checking.set()
        go_on.wait(timeout=10)
        return "may write"

    async def turn() -> None:
        async with a.hold(CID, slow_check):
            pytest.fail("cancelled before it held the lease")

    task = asyncio.create_task(turn())
    assert await asyncio.to_thread(checking.wait, 10)
    task.cancel()
    go_on.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(tried.wait, 10)
    assert task.cancelled() and not live(engines[0], clock)
