"""Admission: the conversation's budget first, then the visitor's limits; decided before anything is stored."""

from __future__ import annotations

import pytest
from sqlmodel import select

from chat.conversation.fallback import FallbackPolicy
from chat.domain import GenerationOptions
from chat.errors import InputError
from chat.limits.admission import Admission
from chat.sharing.access import Actor
from storage import session_scope
from storage.models import ConversationRow
from tests.fakes import FakeProvider, collect, make_service, migrated_engine

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
