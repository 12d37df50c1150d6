"""The response cache: an identical request with a fixed seed reuses the stored answer.

Without a seed a user asking again wants a new variant, so only requests that set a seed
are looked up. The key is a hash of everything sent (model, replayed contents, options);
the answer comes back from the stored turn and its images in the blob store, at no cost.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from sqlalchemy.engine import Engine

from chat.domain import ImageData, ImagePart, ProviderReply, ReplyPart, TextPart, Usage
from storage import BlobStore, session_scope
from storage import repository as repo

__all__ = ["ReplyCache", "request_hash"]


def request_hash(provider: str, model: str, body: bytes) -> str:
    """The key of a request: its exact bytes (built deterministically from the history) and where it went."""
    digest = hashlib.sha256(f"{provider}\n{model}\n".encode())
    digest.update(body)
    return digest.hexdigest()


class ReplyCache:
    def __init__(self, engine: Engine, blobs: BlobStore) -> None:
        self._engine = engine
        self._blobs = blobs

    def get(self, key: str) -> ProviderReply | None:
        with session_scope(self._engine, read_only=True) as session:
            turn = repo.turn_for_request(session=session, request_hash=key)
        if turn is None or turn.provider is None:
            return None
        parts: list[ReplyPart] = []
        for part in turn.parts:
            if isinstance(part, ImagePart):
                data = self._blobs.read(part.sha256, part.mime_type)
                parts.append(
                    ImageData(
                        data, part.mime_type, thought=part.thought, provider_metadata=part.provider_metadata
                    )
                )
            elif isinstance(part, TextPart):
                parts.append(part)
        return ProviderReply(
            provider=turn.provider,
            model=turn.model or "",
            parts=tuple(parts),
            finish_reason=turn.finish_reason,
            usage=replace(turn.usage or Usage(), cost_usd=0.0),  # paid for once already
            request_hash=key,
            cached=True,
        )
