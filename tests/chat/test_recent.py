"""The conversations kept between turns: by id, least recently written out first, bounded in size."""

from __future__ import annotations

from chat.conversation.recent import RecentConversations, conversation_chars
from chat.domain import Conversation, Role, TextPart, Turn, frozen_metadata


def conversation(conversation_id: str, signature_chars: int = 10) -> Conversation:
    answer = Turn(
        role=Role.ASSISTANT,
        parts=(
            TextPart(
                "Done.",
                provider_metadata=frozen_metadata({"gemini": {"thoughtSignature": "s" * signature_chars}}),
            ),
        ),
    )
    return Conversation(
        id=conversation_id, title="t", turns=(Turn(role=Role.USER, parts=(TextPart("hi"),)), answer)
    )


def test_kept_by_id_and_replaced_by_the_newer_write() -> None:
    recent = RecentConversations()
    first = conversation("a")
    recent.put(first)
    assert recent.get("a") is first and recent.get("b") is None
    newer = conversation("a", signature_chars=20)
    recent.put(newer)
    assert recent.get("a") is newer and len(recent) == 1


def test_the_least_recently_used_leave_first_past_the_count() -> None:
    recent = RecentConversations(max_conversations=2)
    for name in "abc":
        recent.put(conversation(name))
        if name == "b":
            recent.get("a")  # a is now more recent than b
    assert recent.get("b") is None
    assert recent.get("a") is not None and recent.get("c") is not None


def test_large_signatures_count_against_the_bound() -> None:
    """Thought signatures are opaque and may be megabytes: the bound is on what is held, not just how many."""
    small = conversation("small")
    big = conversation("big", signature_chars=900)
    assert conversation_chars(big) > 900
    recent = RecentConversations(max_chars=conversation_chars(small) + conversation_chars(big))
    recent.put(small)
    recent.put(big)
    assert len(recent) == 2
    recent.put(conversation("other", signature_chars=500))
    assert recent.get("small") is None and recent.get("big") is None and recent.get("other") is not None
    huge = conversation("huge", signature_chars=10_000)
    recent.put(huge)
    assert recent.get("huge") is None  # larger than the whole bound: loaded each turn instead
