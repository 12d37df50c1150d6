"""Conversation leases in storage: taken, renewed, given up and taken over at explicit times; one
statement each, so two replicas racing for a lease never both get it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from storage import (
    ConversationNotFoundError,
    create_conversation,
    delete_conversation,
    migrate,
    session_scope,
)
from storage import repository as repo

pytestmark = pytest.mark.both_databases

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)
OWNER = "owner-of-the-leased-conversations"


@pytest.fixture
def conversations(engine: Engine) -> Engine:
    with session_scope(engine) as session:
        for conversation_id in ("c1", "c2"):
            create_conversation(
                session=session, conversation_id=conversation_id, title="t", now=NOW, owner_id=OWNER
            )
    return engine


def acquire(engine: Engine, holder: str, now: datetime, conversation_id: str = "c1") -> bool:
    with session_scope(engine) as session:
        return repo.acquire_lease(
            session=session, conversation_id=conversation_id, holder=holder, now=now, expires_at=now + TTL
        )


def live(engine: Engine, now: datetime) -> set[str]:
    with session_scope(engine, read_only=True) as session:
        return repo.live_leases(session=session, conversation_ids=["c1", "c2", "absent"], now=now)


def test_a_lease_is_taken_once_until_it_is_given_up(conversations: Engine) -> None:
    engine = conversations
    assert live(engine, NOW) == set()
    assert acquire(engine, "a", NOW)
    assert not acquire(engine, "b", NOW + timedelta(seconds=29))  # a's, and live
    assert live(engine, NOW + timedelta(seconds=29)) == {"c1"}
    assert acquire(engine, "b", NOW, conversation_id="c2")  # leases are per conversation
    with session_scope(engine) as session:
        assert not repo.release_lease(session=session, conversation_id="c1", holder="b")  # not b's to give up
        assert repo.release_lease(session=session, conversation_id="c1", holder="a")
        assert not repo.release_lease(session=session, conversation_id="c1", holder="a")
    assert acquire(engine, "b", NOW + timedelta(seconds=1))
    with session_scope(engine, read_only=True) as session:
        assert repo.live_lease_count(session=session, now=NOW + timedelta(seconds=1)) == 2


def test_an_expired_lease_is_taken_over_and_its_old_holder_can_no_longer_renew_it(
    conversations: Engine,
) -> None:
    engine = conversations
    assert acquire(engine, "dead", NOW)
    assert live(engine, NOW + TTL - timedelta(microseconds=1)) == {"c1"}
    assert live(engine, NOW + TTL) == set()  # expires_at is the first moment it is free
    assert acquire(engine, "next", NOW + TTL)
    with session_scope(engine) as session:
        assert not repo.renew_lease(
            session=session, conversation_id="c1", holder="dead", expires_at=NOW + 2 * TTL
        )
        assert not repo.release_lease(session=session, conversation_id="c1", holder="dead")
    assert not acquire(engine, "third", NOW + TTL + timedelta(seconds=1))


def test_renewing_moves_the_expiry_on(conversations: Engine) -> None:
    engine = conversations
    assert acquire(engine, "a", NOW)
    with session_scope(engine) as session:
        assert repo.renew_lease(session=session, conversation_id="c1", holder="a", expires_at=NOW + 2 * TTL)
    assert not acquire(engine, "b", NOW + TTL + timedelta(seconds=1))
    assert live(engine, NOW + 2 * TTL - timedelta(seconds=1)) == {"c1"}


def test_no_lease_without_its_conversation_and_none_after_it(conversations: Engine) -> None:
    engine = conversations
    with pytest.raises(ConversationNotFoundError):
        acquire(engine, "a", NOW, conversation_id="absent")
    assert acquire(engine, "a", NOW)
    with session_scope(engine) as session:
        assert repo.turn_count(session=session, conversation_id="c1") == 0
        assert repo.turn_count(session=session, conversation_id="absent") is None
        assert delete_conversation(session=session, conversation_id="c1")
    assert live(engine, NOW) == set()  # deleted with it (ON DELETE CASCADE)


def test_two_engines_racing_for_one_lease_get_it_exactly_once(
    conversations: Engine, open_engine: Callable[[], Engine]
) -> None:
    """Two replicas, 20 rounds: each round both try at the same instant, then the winner gives it up."""
    engines = [conversations, open_engine()]
    migrate(engines[1])  # nothing to do: it opens the same database
    rounds = 20
    start = threading.Barrier(2)
    wins: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def replica(index: int) -> None:
        try:
            for n in range(rounds):
                now = NOW + timedelta(seconds=n)
                start.wait(timeout=30)
                if acquire(engines[index], f"replica-{index}-{n}", now):
                    wins[index].append(n)
                start.wait(timeout=30)  # both have tried before the winner lets go
                if n in wins[index]:
                    with session_scope(engines[index]) as session:
                        assert repo.release_lease(
                            session=session, conversation_id="c1", holder=f"replica-{index}-{n}"
                        )
        except BaseException as exc:  # reported below, where pytest sees it
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(wins[0] + wins[1]) == list(range(rounds))  # exactly one winner every round
