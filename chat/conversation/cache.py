"""The response cache: an identical request with a fixed seed reuses the stored answer.

Without a seed a user asking again wants a new variant, so only requests that set a seed
are looked up. ``CachedProvider`` wraps any provider: the key is a hash of everything the
request is made from (the provider, the model, the options and every replayed field of the
history, images by hash), and a hit comes back from the stored turn and its images in the
blob store, at no cost.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import replace

from pydantic import SecretStr
from sqlalchemy.engine import Engine

from chat.conversation.fallback import ImageProvider
from chat.domain import (
    GenerationOptions,
    ImageData,
    ImagePart,
    ProgressSink,
    ProviderReply,
    ReplyPart,
    TextPart,
    Turn,
    Usage,
)
from storage import BlobStore, session_scope
from storage import repository as repo

__all__ = ["CachedProvider", "ReplyCache", "request_key"]


def request_key(provider: str, model: str, history: Sequence[Turn], options: GenerationOptions) -> str:
    """What a request is made of, hashed: two requests with the same key send the same thing.

    Of each turn only what a provider may replay counts (not when it was made, nor what it cost),
    so the same message with the same seed in a new conversation is the same request.
    """
    replayed = [
        {
            "role": turn.role.value,
            "failed": turn.failed,
            "provider": turn.provider,
            "model": turn.model,
            "options_model": turn.options.get("model"),
            "parts": [part.to_dict() for part in turn.parts],
        }
        for turn in history
    ]
    sent = {key: value for key, value in options.to_dict().items() if key != "budget_usd"}  # never sent
    payload = {"provider": provider, "model": model, "options": sent, "history": replayed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class ReplyCache:
    """Stored answers by request key: the turns storage already keeps, and their images."""

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


class CachedProvider:
    """``provider`` with the response cache in front of it; the same ``ImageProvider`` contract."""

    def __init__(self, provider: ImageProvider, cache: ReplyCache) -> None:
        self._provider = provider
        self._cache = cache
        self.name = provider.name

    @property
    def configured(self) -> bool:
        return self._provider.configured

    def model_for(self, options: GenerationOptions) -> str:
        return self._provider.model_for(options)

    def worst_case_cost(self, options: GenerationOptions, *, input_images: int) -> float:
        return self._provider.worst_case_cost(options, input_images=input_images)

    async def reply(
        self,
        history: Sequence[Turn],
        options: GenerationOptions,
        load_image: Callable[[ImagePart], bytes],
        *,
        api_key: SecretStr | None = None,
        progress: ProgressSink | None = None,
    ) -> ProviderReply:
        if options.seed is None:
            return await self._provider.reply(
                history, options, load_image, api_key=api_key, progress=progress
            )
        key = request_key(self.name, self.model_for(options), history, options)
        cached = await asyncio.to_thread(self._cache.get, key)
        if cached is not None:
            return cached
        reply = await self._provider.reply(history, options, load_image, api_key=api_key, progress=progress)
        return replace(reply, request_hash=key)
