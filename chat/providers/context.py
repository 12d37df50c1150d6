"""How much history a request carries: all text, but only the last few images.

Every turn replays the whole conversation, so without a bound the request grows by an
image (and, for Gemini, a signed model turn) per edit. The policy keeps the newest turns
whole until they hold ``keep_images`` images, and turns everything older into text
(what was asked, what was answered, "[image omitted]"). It always cuts at the start of a
user message, so a model turn is never kept without the message it answered.
"""

from __future__ import annotations

from collections.abc import Sequence

from chat.domain import ImageRole, Role, Turn

__all__ = ["DEFAULT_KEEP_IMAGES", "split_history"]

DEFAULT_KEEP_IMAGES = 2  # from bench/replay_growth.py: the only K that keeps turn-30 bytes within 2x turn 2


def split_history(turns: Sequence[Turn], keep_images: int | None) -> tuple[list[Turn], list[Turn]]:
    """(older turns to send as text only, newest turns to send whole)."""
    if keep_images is None:
        return [], list(turns)
    images = 0
    cut = len(turns)
    for index in range(len(turns) - 1, -1, -1):
        images += _image_count(turns[index])
        if turns[index].role is Role.USER:
            if images > keep_images and index < _last_user_index(turns):
                break
            cut = index
    return list(turns[:cut]), list(turns[cut:])


def _image_count(turn: Turn) -> int:
    if turn.role is Role.USER:
        return sum(1 for p in turn.images() if p.role is not ImageRole.MASK)
    return 0 if turn.failed else len(turn.images())


def _last_user_index(turns: Sequence[Turn]) -> int:
    return max((i for i, t in enumerate(turns) if t.role is Role.USER), default=0)
