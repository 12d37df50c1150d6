"""The guard's limits and daily cap, shared by every replica through the database.

"Two replicas" are two engines on the test's one database (or two processes); the clock is a
``FakeClock`` they share, and threads released by one barrier make their admissions collide.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine
from sqlmodel import SQLModel, select

from chat.errors import LimitError
from chat.limits.guard import DAY, Guard, Limits, Reservation
from storage import session_scope
from storage.models import RateEventRow, SpendReservationRow
from tests.databases import database_url
from tests.fakes import FakeClock, migrated_engine

pytestmark = pytest.mark.both_databases

ROOT = Path(__file__).resolve().parents[2]
NOON = 1_800_000_000.0  # 2027-01-15 08:00 UTC
CAP = Limits(daily_spend_usd=1.0)
BUDGET_SPENT = r"today's budget.*\$1\.00.*your own Gemini or OpenAI key"
T = TypeVar("T")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOON)


@pytest.fixture
def replicas(tmp_path: Path) -> Callable[[int], list[Engine]]:
    """``replicas(n)``: n engines on the test's database (n replicas), disposed afterwards."""
    engines: list[Engine] = []

    def open_(n: int) -> list[Engine]:
        engines.extend(migrated_engine(tmp_path / "data") for _ in range(n))
        return engines[-n:]

    yield open_
    for engine in engines:
        engine.dispose()


@pytest.fixture
def engine(replicas: Callable[[int], list[Engine]]) -> Engine:
    return replicas(1)[0]


def at_once(calls: Sequence[Callable[[], T]]) -> list[T | LimitError]:
    """Run every call in a thread of its own, all released together; a LimitError is a result."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T | LimitError:
        start.wait()
        try:
            return call()
        except LimitError as refused:
            return refused

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def rows(engine: Engine, table: type[SQLModel]) -> list[dict[str, Any]]:
    """A table's rows, as values."""
    with session_scope(engine, read_only=True) as session:
        return [row.model_dump() for row in session.exec(select(table)).all()]


def test_rate_limit_per_visitor_and_overall(engine, clock):
    guard = Guard(Limits(per_visitor_per_minute=2, global_per_minute=3), engine=engine, clock=clock)
    guard.admit(["1.2.3.4"], server_cost=0)
    guard.admit(["1.2.3.4"], server_cost=0)
    with pytest.raises(LimitError, match=r"2 edits in the last minute.*wait 60 s"):
        guard.admit(["1.2.3.4"], server_cost=0)
    guard.admit(["5.6.7.8"], server_cost=0)
    with pytest.raises(LimitError, match="very busy"):
        guard.admit(["9.9.9.9"], server_cost=0)
    clock.now += 61
    guard.admit(["1.2.3.4"], server_cost=0)


def test_turns_on_visitors_own_keys_are_not_counted_nor_refused_by_the_global_limit(engine, clock):
    """The global limit guards the server keys' quota: a visitor's own keys are theirs."""
    guard = Guard(Limits(global_per_minute=2), engine=engine, clock=clock)
    guard.admit(["1.1.1.1"], server_cost=0, server_keys=False)
    guard.admit(["2.2.2.2"], server_cost=0)
    guard.admit(["3.3.3.3"], server_cost=0)
    guard.admit(
        ["4.4.4.4"], server_cost=0, server_keys=False
    )  # the server keys' minute is full: theirs is not
    with pytest.raises(LimitError, match="very busy"):
        guard.admit(["5.5.5.5"], server_cost=0)


def test_the_wait_counts_from_the_oldest_turn_of_the_minute(engine, clock):
    guard = Guard(Limits(per_visitor_per_minute=2), engine=engine, clock=clock)
    guard.admit(["1.2.3.4"], server_cost=0)
    clock.now += 20
    guard.admit(["1.2.3.4"], server_cost=0)
    clock.now += 15
    with pytest.raises(LimitError, match=r"You have made 2 edits in the last minute.*Please wait 25 s\.$"):
        guard.admit(["1.2.3.4"], server_cost=0)


def test_daily_visitor_limit(engine, clock):
    guard = Guard(Limits(per_visitor_per_minute=100, per_visitor_per_day=3), engine=engine, clock=clock)
    for _ in range(3):
        guard.admit(["1.2.3.4"], server_cost=0)
        clock.now += 120
    with pytest.raises(LimitError, match="today's limit of 3 edits"):
        guard.admit(["1.2.3.4"], server_cost=0)
    clock.now += 86_400
    guard.admit(["1.2.3.4"], server_cost=0)


def test_spend_cap_stops_server_keys_but_not_visitors_own(engine, clock):
    guard = Guard(CAP, engine=engine, clock=clock)
    guard.charge(0.95)
    with pytest.raises(LimitError, match=BUDGET_SPENT):
        guard.admit(["1.2.3.4"], server_cost=0.10)
    guard.admit(["1.2.3.4"], server_cost=0)  # their own keys: not counted
    restarted = Guard(CAP, engine=engine, clock=clock)
    assert restarted.spent_today() == pytest.approx(0.95)  # the ledger survives a restart
    clock.now += 86_400
    restarted.admit(["1.2.3.4"], server_cost=0.10)  # a new day


def test_a_rate_limit_is_shared_by_replicas(replicas, clock):
    guards = [Guard(Limits(per_visitor_per_minute=4), engine=e, clock=clock) for e in replicas(2)]

    results = at_once([lambda g=g: g.admit(["edit key:one-key"], server_cost=0) for g in guards * 5])

    refusals = [r for r in results if isinstance(r, LimitError)]
    assert len(results) - len(refusals) == 4
    assert {str(r) for r in refusals} == {
        "You have made 4 edits in the last minute, the most this demo allows. Please wait 60 s."
    }


def test_replicas_admitting_at_once_reserve_no_more_than_the_cap(replicas, clock):
    engines = replicas(2)
    guards = [Guard(CAP, engine=e, clock=clock) for e in engines]

    results = at_once(
        [lambda g=g, n=n: g.admit([f"visitor {n}"], server_cost=0.15) for n, g in enumerate(guards * 6)]
    )

    admitted = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, LimitError)]
    assert (len(admitted), len(refused)) == (6, 6)  # 6 x $0.15 fit in $1, a 7th would not
    assert all("today's budget" in str(r) for r in refused)
    costs = [0.05 + 0.01 * n for n in range(len(admitted))]
    for n, (reservation, cost) in enumerate(zip(admitted, costs, strict=True)):
        with session_scope(engines[n % 2]) as session:  # the answer's transaction, on either replica
            guards[n % 2].settle(reservation, cost, session=session)
    assert guards[0].spent_today() == pytest.approx(sum(costs), abs=1e-9)
    assert rows(engines[1], SpendReservationRow) == []


def test_a_dead_replicas_reservation_stops_counting_after_the_longest_turn(replicas, clock):
    engines = replicas(2)
    dead, alive = (Guard(CAP, engine=e, clock=clock) for e in engines)
    assert dead.admit(["visitor a"], server_cost=0.90) is not None  # ... and its replica is killed

    with pytest.raises(LimitError, match=BUDGET_SPENT):
        alive.admit(["visitor b"], server_cost=0.15)
    clock.now += CAP.reservation_ttl_s - 1
    with pytest.raises(LimitError, match=BUDGET_SPENT):
        alive.admit(["visitor b"], server_cost=0.15)
    clock.now += 1

    assert alive.admit(["visitor b"], server_cost=0.15) is not None
    assert [r["usd"] for r in rows(engines[1], SpendReservationRow)] == [0.15]  # the dead one is gone


def test_a_refusal_counts_and_reserves_nothing(engine, clock):
    guard = Guard(Limits(per_visitor_per_minute=1, daily_spend_usd=0.10), engine=engine, clock=clock)
    with pytest.raises(LimitError, match="today's budget"):
        guard.admit(["1.2.3.4"], server_cost=0.20)
    assert rows(engine, RateEventRow) == [] and rows(engine, SpendReservationRow) == []

    guard.admit(["1.2.3.4"], server_cost=0.05)  # the refused turn did not use the minute's one edit
    with pytest.raises(LimitError, match="1 edits in the last minute"):
        guard.admit(["1.2.3.4"], server_cost=0.05)
    assert len(rows(engine, SpendReservationRow)) == 1


def test_a_released_reservation_stops_counting(engine, clock):
    guard = Guard(CAP, engine=engine, clock=clock)
    reservation = guard.admit(["1.2.3.4"], server_cost=0.90)
    assert reservation is not None

    guard.release(reservation)

    guard.admit(["1.2.3.4"], server_cost=0.90)
    assert guard.spent_today() == 0


def test_events_no_window_counts_are_forgotten(engine, clock):
    guard = Guard(Limits(), engine=engine, clock=clock)
    for visitor in ("1.2.3.4", "5.6.7.8"):
        guard.admit([visitor, f"edit key:{visitor}"], server_cost=0)
    assert len(rows(engine, RateEventRow)) == 6  # two buckets each, and everyone's twice

    clock.now += 61
    guard.admit(["9.9.9.9"], server_cost=0)
    assert len(rows(engine, RateEventRow)) == 4 + 2  # everyone's minute has passed
    clock.now += DAY
    guard.admit(["9.9.9.9"], server_cost=0)

    assert len(rows(engine, RateEventRow)) == 2


def test_the_first_charges_of_a_day_from_four_writers_all_count(replicas, clock):
    guards = [Guard(Limits(), engine=e, clock=clock) for e in replicas(4)]
    for day in range(10):  # the issue saw an IntegrityError here 9 days in 10
        clock.now = NOON + day * DAY
        at_once([lambda g=g: g.charge(0.25) for g in guards])
        assert guards[0].spent_today() == pytest.approx(1.00)


CHARGER = """
import sys
from concurrent.futures import ThreadPoolExecutor
from chat.limits.guard import Guard, Limits
from storage import make_engine

guard = Guard(Limits(), engine=make_engine(sys.argv[1]), clock=lambda: float(sys.argv[2]))
print("ready", flush=True)
sys.stdin.readline()
with ThreadPoolExecutor(8) as pool:
    list(pool.map(lambda _: guard.charge(0.01), range(100)))
"""


@pytest.mark.system  # two interpreters start
def test_two_hundred_charges_from_two_processes_all_count(tmp_path, engine, clock):
    argv = [sys.executable, "-c", CHARGER, database_url(tmp_path / "data"), str(clock())]
    processes = [
        subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    for process in processes:  # both are ready: let them charge at once
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.close()

    assert [process.wait(timeout=120) for process in processes] == [0, 0]
    assert Guard(Limits(), engine=engine, clock=clock).spent_today() == pytest.approx(2.00, abs=1e-9)
