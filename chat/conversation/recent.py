"""The conversations this process wrote last, kept so that the next turn need not load them.

Loading a conversation is a query over every turn and part, a cost that grows with it. Only
the chat service appends turns, under the conversation's lease, so what it wrote is what a load
would return, unless another replica appended since: the writer checks a copy against the stored
turn count, read under the lease, before using it (chat/conversation/turns.py). Bounded by
count and by the characters of text and provider metadata held: thought signatures are opaque
and may be large.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping

from chat.domain import Conversation, TextPart

__all__ = ["RecentConversations", "conversation_chars"]

DEFAULT_MAX_CONVERSATIONS = 256
DEFAULT_MAX_CHARS = 64 * 1024 * 1024


class RecentConversations:
    """A thread-safe LRU of conversations by id (turns are stored from worker threads)."""

    def __init__(
        self, max_conversations: int = DEFAULT_MAX_CONVERSATIONS, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        self._max_conversations = max_conversations
        self._max_chars = max_chars
        self._entries: OrderedDict[str, tuple[Conversation, int]] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, conversation_id: str) -> Conversation | None:
        with self._lock:
            entry = self._entries.get(conversation_id)
            if entry is None:
                return None
            self._entries.move_to_end(conversation_id)
            return entry[0]

    def put(self, conversation: Conversation) -> None:
        """Keep ``conversation`` (just committed); the least recently written leave first."""
        chars = conversation_chars(conversation)
        with self._lock:
            self._drop(conversation.id)
            if chars > self._max_chars:
                return
            self._entries[conversation.id] = (conversation, chars)
            self._chars += chars
            while len(self._entries) > self._max_conversations or self._chars > self._max_chars:
                self._drop(next(iter(self._entries)))

    def forget(self, conversation_id: str) -> None:
        with self._lock:
            self._drop(conversation_id)

    def _drop(self, conversation_id: str) -> None:
        entry = self._entries.pop(conversation_id, None)
        if entry is not None:
            self._chars -= entry[1]


def conversation_chars(conversation: Conversation) -> int:
    """About how many characters of text and metadata the conversation holds (images are by hash)."""
    total = 0
    for turn in conversation.turns:
        total += _chars(turn.options) + 64  # usage, status and names: a few short values
        for part in turn.parts:
            total += _chars(part.provider_metadata) + (len(part.text) if isinstance(part, TextPart) else 64)
    return total


def _chars(value: object) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(len(str(key)) + _chars(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return sum(_chars(item) for item in value)
    return 8
