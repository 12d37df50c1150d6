"""Who answers a turn: Gemini first, OpenAI when Gemini cannot; decided on error types only.

- Route.AUTO: Gemini, with bounded retries for transient failures (rate-limited,
  unavailable, timeout); then OpenAI when Gemini is still failing that way, answered
  without an image, refused the request, or has no key. A bad request or a rejected key
  is not a reason to switch: the user must fix it, and OpenAI would hide it.
- Route.GEMINI / Route.OPENAI: that provider only, with the same retries.

Retries honour the provider's ``retryDelay`` / ``Retry-After``, back off exponentially
otherwise, and are bounded both in count and in total waiting time. Sleep, clock and
jitter are injected so tests never wait.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Protocol, TypeVar, runtime_checkable

from pydantic import SecretStr

from chat.config import DEFAULTS
from chat.domain import (
    Attempt,
    GenerationOptions,
    ImageData,
    ImagePart,
    Phase,
    Progress,
    ProgressSink,
    ProviderReply,
    Route,
    Turn,
)
from chat.errors import (
    BlockedError,
    MissingKeyError,
    NoImageError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    UnavailableError,
)
from chat.media.images import verify_image

__all__ = ["FallbackPolicy", "ImageProvider", "ManyImageProvider", "Outcome", "RetryPolicy"]

RETRYABLE = (RateLimitedError, UnavailableError, ProviderTimeoutError)
FALL_BACK_ON = (*RETRYABLE, NoImageError, BlockedError, MissingKeyError)
ROUTES: dict[Route, tuple[str, ...]] = {
    Route.AUTO: ("gemini", "openai"),
    Route.GEMINI: ("gemini",),
    Route.OPENAI: ("openai",),
}


class ImageProvider(Protocol):
    """What the policy needs of a provider; each provider package implements it (and nothing else does)."""

    name: str

    @property
    def configured(self) -> bool: ...

    def model_for(self, options: GenerationOptions) -> str:
        """The model a call with ``options`` would use."""
        ...

    def worst_case_cost(self, options: GenerationOptions, *, input_images: int) -> float:
        """The most one call with ``options`` could cost, before it runs (for budgets and caps)."""
        ...

    async def reply(
        self,
        history: Sequence[Turn],
        options: GenerationOptions,
        load_image: Callable[[ImagePart], bytes],
        *,
        api_key: SecretStr | None = None,
        progress: ProgressSink | None = None,
    ) -> ProviderReply:
        """The answer; ``progress`` (if given) is told what the call has shown so far, from its worker thread."""
        ...


@runtime_checkable
class ManyImageProvider(ImageProvider, Protocol):
    """A provider that makes several images in one call (OpenAI's ``n``): variants on one request."""

    async def reply_many(
        self,
        history: Sequence[Turn],
        options: GenerationOptions,
        load_image: Callable[[ImagePart], bytes],
        *,
        n: int,
        api_key: SecretStr | None = None,
        progress: ProgressSink | None = None,
    ) -> list[ProviderReply]:
        """Up to ``n`` answers, each with its share of the call's usage."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = DEFAULTS.retry_attempts  # calls per provider per turn
    base_delay_s: float = DEFAULTS.retry_base_delay_s
    max_delay_s: float = 20.0
    max_total_s: float = DEFAULTS.retry_max_total_s  # from the turn's start; no retry is started past this


@dataclass(frozen=True)
class Outcome:
    """The answer, or the error that ended the turn, plus every call made on the way."""

    reply: ProviderReply | None
    error: ProviderError | None
    attempts: tuple[Attempt, ...]
    errors: tuple[ProviderError, ...] = ()

    def user_message(self) -> str:
        """One sentence per provider that failed, in the order they were tried."""
        last_per_provider: dict[str, ProviderError] = {}
        for error in self.errors:
            last_per_provider[error.provider] = error
        messages = [e.user_message() for e in last_per_provider.values()]
        if len(messages) < 2:
            return messages[0] if messages else ""
        return f"{messages[0]} Tried {list(last_per_provider.values())[1].provider_name} too: {messages[1]}"


Sleep = Callable[[float], Awaitable[None]]
R = TypeVar("R", ProviderReply, list[ProviderReply])


class FallbackPolicy:
    def __init__(
        self,
        providers: Mapping[str, ImageProvider],
        *,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[float], float] = lambda delay: delay * random.uniform(0.8, 1.0),
    ) -> None:
        self._providers = providers
        self._retry = retry
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter

    def model_for(self, provider: str, options: GenerationOptions) -> str:
        known = self._providers.get(provider)
        return known.model_for(options) if known else options.model

    def worst_case_cost(self, options: GenerationOptions, *, input_images: int) -> float:
        """The most a turn could cost before it runs: every provider its route may call, once each."""
        return sum(
            self._providers[name].worst_case_cost(options, input_images=input_images)
            for name in self._order(options)
        )

    async def answer(
        self,
        history: Sequence[Turn],
        options: GenerationOptions,
        load_image: Callable[[ImagePart], bytes],
        *,
        keys: Mapping[str, SecretStr] | None = None,
        progress: ProgressSink | None = None,
    ) -> Outcome:
        """``keys``: a visitor's own API keys by provider; they win over the server's. ``progress``
        hears each call's snapshots, a retry's wait and a fallback's reason."""
        keys = keys or {}
        started = self._clock()
        attempts: list[Attempt] = []
        errors: list[ProviderError] = []
        order = self._order(options)
        for index, name in enumerate(order):
            provider = self._providers[name]
            is_last = index == len(order) - 1
            if index > 0 and not (provider.configured or name in keys):
                break  # a fallback without a key is not a fallback
            calls = progress
            if index > 0 and progress is not None and errors:
                note = errors[-1].user_message()  # "Gemini failed: …"
                progress(Progress(name, Phase.FALLING_BACK, model=self.model_for(name, options), note=note))
                calls = _still_falling_back(progress, note)
            try:
                reply = await self._with_retries(
                    provider,
                    keys.get(name),
                    partial(provider.reply, history, options, load_image, progress=calls),
                    options,
                    started,
                    attempts,
                    errors,
                    progress,
                )
            except ProviderError as error:
                if is_last or not isinstance(error, FALL_BACK_ON):
                    break
                continue
            return Outcome(reply, None, tuple(attempts), tuple(errors))
        return Outcome(None, _deciding_error(errors), tuple(attempts), tuple(errors))

    def _order(self, options: GenerationOptions) -> list[str]:
        """The providers ``options``' route asks, in turn, among those this policy has."""
        return [name for name in ROUTES[options.route] if name in self._providers]

    def makes_many(self, options: GenerationOptions) -> bool:
        """Whether ``options``' variants come from one call: a route with one provider that makes
        several images per call (OpenAI's ``n``). Gemini's image models refuse ``candidateCount`` > 1,
        so its variants are separate calls (and so are a fallback route's: each may fall back alone)."""
        order = self._order(options)
        return (
            options.variants > 1
            and len(order) == 1
            and isinstance(self._providers[order[0]], ManyImageProvider)
        )

    async def answer_many(
        self,
        history: Sequence[Turn],
        options: GenerationOptions,
        load_image: Callable[[ImagePart], bytes],
        *,
        keys: Mapping[str, SecretStr] | None = None,
        progress: ProgressSink | None = None,
    ) -> list[Outcome]:
        """``options.variants`` answers from one call with the same retries as ``answer`` (only
        when ``makes_many``); the call's attempts are every variant's. Fewer images than asked
        for leave the others failed, saying so."""
        keys = keys or {}
        (name,) = self._order(options)
        provider = self._providers[name]
        assert isinstance(provider, ManyImageProvider)
        attempts: list[Attempt] = []
        errors: list[ProviderError] = []
        n = options.variants
        try:
            replies = await self._with_retries(
                provider,
                keys.get(name),
                partial(provider.reply_many, history, options, load_image, n=n, progress=progress),
                options,
                self._clock(),
                attempts,
                errors,
                progress,
            )
        except ProviderError:
            return [Outcome(None, _deciding_error(errors), tuple(attempts), tuple(errors))] * n
        missing = NoImageError(name, f"the answer held {len(replies)} of the {n} images asked for")
        return [Outcome(reply, None, tuple(attempts), tuple(errors)) for reply in replies] + [
            Outcome(None, missing, tuple(attempts), (*errors, missing))
        ] * (n - len(replies))

    async def _with_retries(
        self,
        provider: ImageProvider,
        api_key: SecretStr | None,
        ask: Callable[..., Awaitable[R]],
        options: GenerationOptions,
        started: float,
        attempts: list[Attempt],
        errors: list[ProviderError],
        progress: ProgressSink | None,
    ) -> R:
        """``ask(api_key=…)`` (one reply, or a list from one call) until it answers or this provider is done."""
        model = self.model_for(provider.name, options)
        paid_by = "visitor" if api_key else "server"
        for call in range(1, self._retry.max_attempts + 1):
            try:
                answer = await ask(api_key=api_key)
                replies = answer if isinstance(answer, list) else [answer]
                for reply in replies:
                    await asyncio.to_thread(_check_images, reply)
            except ProviderError as error:
                attempts.append(Attempt(provider.name, model, error.kind, error.detail, paid_by))
                errors.append(error)
                delay = self._delay(error, call, started)
                if delay is None:
                    raise
                if progress is not None:
                    note = f"{error.user_message()} Trying again in {max(delay, 1):.0f} s."
                    progress(Progress(provider.name, Phase.RETRYING, model=model, note=note))
                await self._sleep(delay)
                continue
            first = replies[0]
            if first.cached:
                attempts.append(Attempt(provider.name, first.model, "ok", "from cache", "cache"))
            else:
                attempts.append(Attempt(provider.name, first.model, "ok", paid_by=paid_by))
            return answer
        raise AssertionError("unreachable: the last attempt either returns or raises")

    def _delay(self, error: ProviderError, call: int, started: float) -> float | None:
        """Seconds to wait before calling again, or None when this provider is done."""
        if not isinstance(error, RETRYABLE) or call >= self._retry.max_attempts:
            return None
        retry_after = error.retry_after if isinstance(error, RateLimitedError) else None
        if retry_after is not None:
            delay = retry_after
        else:
            delay = self._jitter(min(self._retry.base_delay_s * 2 ** (call - 1), self._retry.max_delay_s))
        if delay > self._retry.max_delay_s:
            return None  # e.g. a daily quota: waiting is pointless, fall back now
        if self._clock() - started + delay > self._retry.max_total_s:
            return None
        return delay


def _still_falling_back(progress: ProgressSink, note: str) -> ProgressSink:
    """The fallback provider's "waiting" snapshots, reported as the fallback with its reason: its
    client reports waiting as soon as it sends, and as only a call's newest snapshot is shown (a
    watcher may skip some), a plain "waiting" would hide why OpenAI is asked at all."""

    def sink(snapshot: Progress) -> None:
        if snapshot.phase is Phase.WAITING:
            snapshot = replace(snapshot, phase=Phase.FALLING_BACK, note=note)
        progress(snapshot)

    return sink


def _check_images(reply: ProviderReply) -> None:
    """An answer whose image does not decode is a failed call: retried, then handed to the fallback."""
    for part in reply.parts:
        if isinstance(part, ImageData):
            try:
                verify_image(part.data)
            except ValueError:
                raise UnavailableError(reply.provider, "the image in the answer was corrupt") from None


def _deciding_error(errors: Sequence[ProviderError]) -> ProviderError | None:
    """The error the turn ends with: a text-only answer from the first provider beats a later failure.

    If OpenAI also failed after Gemini answered with text only, the user still gets Gemini's text.
    """
    for error in errors:
        if isinstance(error, NoImageError) and error.reply is not None:
            return error
    return errors[-1] if errors else None
