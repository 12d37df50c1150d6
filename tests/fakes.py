"""Fakes shared by tests: a provider, a clock, a Gradio request, httpx handlers, and the
service wiring around them (pictures live in ``tests.pictures``, processes in ``tests.app_process``).

- ``FakeProvider`` answers from a queue; ``reply_with_image`` builds what it answers;
  ``single_try`` puts providers behind a policy without retries.
- ``FakeClock`` is time that moves only when slept on (or set); ``UTCClock`` is a datetime one
  moved by hand, and ``ParkedSleeps`` sleeps that wait until the test wakes them, one at a time.
- ``FakeRequest`` stands in for the ``gr.Request`` a handler is given.
- ``recording`` and ``raising`` are ``httpx.MockTransport`` handlers; ``TRANSPORT_FAILURES``
  pairs the transport errors with the error each provider client maps them to.
- ``migrated_engine``, ``make_service`` and ``make_library`` wire real storage around a policy;
  ``emulator_providers`` are the real clients pointed at the emulator;
  ``collect``, ``last`` and ``no_sleep`` drive what they return.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import Engine

from chat.conversation.fallback import FallbackPolicy, RetryPolicy
from chat.conversation.service import ChatService, Step
from chat.domain import (
    GenerationOptions,
    ImageData,
    ImagePart,
    Progress,
    ProgressSink,
    ProviderReply,
    TextPart,
    Turn,
    Usage,
    frozen_metadata,
)
from chat.errors import ProviderTimeoutError, UnavailableError
from chat.providers.gemini import GeminiClient
from chat.providers.openai import OpenAIImagesClient
from chat.sharing.library import ConversationLibrary
from storage import BlobStore, DiskBlobStore, make_engine, migrate
from tests.databases import database_url

__all__ = [
    "TRANSPORT_FAILURES",
    "FakeClock",
    "FakeProvider",
    "FakeRequest",
    "ParkedSleeps",
    "UTCClock",
    "collect",
    "emulator_providers",
    "last",
    "make_library",
    "make_service",
    "migrated_engine",
    "no_sleep",
    "raising",
    "recording",
    "reply_with_image",
    "single_try",
]


# --- a provider ------------------------------------------------------------------------------


def reply_with_image(data: bytes, text: str = "Done.", signature: str = "c2ln") -> ProviderReply:
    meta = frozen_metadata({"gemini": {"thoughtSignature": signature}})
    return ProviderReply(
        provider="gemini",
        model="gemini-3.1-flash-image",
        parts=(TextPart(text, provider_metadata=meta), ImageData(data, "image/png", provider_metadata=meta)),
        finish_reason="STOP",
        usage=Usage(input_tokens=200, image_tokens=1000),
    )


class FakeProvider:
    """Answers from a queue of replies or exceptions and records every history it was given;
    reports ``shows`` as its progress first."""

    configured = True

    def __init__(self, name: str = "gemini") -> None:
        self.name = name
        self.queue: list[ProviderReply | Exception] = []
        self.calls: list[list[Turn]] = []
        self.gate: asyncio.Event | None = None
        self.entered: asyncio.Queue[int] = asyncio.Queue()
        self.keys: list[str | None] = []
        self.shows: list[Progress] = []  # what every call reports as its progress, in order, before answering

    def model_for(self, options: GenerationOptions) -> str:
        return options.model

    def worst_case_cost(self, options: GenerationOptions, *, input_images: int) -> float:
        return 0.05 * (input_images + 1)  # a cent-sized figure, so budgets and caps are exercised

    async def reply(
        self,
        history: Sequence[Turn],
        options: GenerationOptions,
        load_image: Callable[[ImagePart], bytes],
        *,
        api_key: SecretStr | None = None,
        progress: ProgressSink | None = None,
    ) -> ProviderReply:
        self.calls.append(list(history))
        self.keys.append(api_key.get_secret_value() if api_key else None)
        for turn in history:
            for image in turn.images():
                load_image(image)  # the bytes must be there to replay
        self.entered.put_nowait(len(self.calls))
        for snapshot in self.shows if progress is not None else ():
            progress(snapshot)
        if self.gate is not None:
            await self.gate.wait()
        item = self.queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def single_try(*providers: Any) -> FallbackPolicy:
    """No retries, so each queued item is one call (retries are tested in test_fallback)."""
    return FallbackPolicy({p.name: p for p in providers}, retry=RetryPolicy(max_attempts=1))


# --- a clock and a request -------------------------------------------------------------------


class FakeClock:
    """Call it for the time; ``sleep`` (awaited) and ``pause`` (not) move it on and record the wait."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.pause(seconds)


class UTCClock:
    """Aware UTC time that moves only when ``advance`` is called."""

    def __init__(self, now: datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ParkedSleeps:
    """Sleeps that take no time of their own: each waits, parked, until ``wake`` lets the oldest
    one go, so a test decides when (and, with a ``UTCClock``, at what time) each sleeper goes on."""

    def __init__(self) -> None:
        self.parked: asyncio.Queue[tuple[float, asyncio.Future[None]]] = asyncio.Queue()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        woken = asyncio.get_running_loop().create_future()
        self.parked.put_nowait((seconds, woken))
        await woken

    async def next(self) -> tuple[float, Callable[[], None]]:
        """The oldest parked sleep (waited for, 10 s at most) and what wakes it; sleeps cancelled
        meanwhile are passed over."""
        seconds, woken = await asyncio.wait_for(self.parked.get(), timeout=10)
        while woken.cancelled():
            seconds, woken = await asyncio.wait_for(self.parked.get(), timeout=10)
        self.slept.append(seconds)
        return seconds, lambda: woken.set_result(None)

    async def wake(self, clock: UTCClock | None = None) -> float:
        """Let the oldest sleeper go, moving ``clock`` on by what it slept; returns that."""
        seconds, go = await self.next()
        if clock is not None:
            clock.advance(seconds)
        go()
        return seconds


async def no_sleep(seconds: float) -> None:
    """Retries are counted, never waited for."""


class FakeRequest:
    """What the UI handlers read of a ``gr.Request``: the query string and the Host header."""

    def __init__(self, query: dict[str, str] | None = None) -> None:
        self.query_params = query or {}
        self.headers = {"host": "retouch.test"}


# --- httpx.MockTransport handlers -------------------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]

TRANSPORT_FAILURES = [
    (httpx.ReadTimeout("slow"), ProviderTimeoutError),
    (httpx.ConnectTimeout("slow"), ProviderTimeoutError),
    (httpx.ConnectError("refused"), UnavailableError),
    (httpx.RemoteProtocolError("reset"), UnavailableError),
]


def recording(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> tuple[list[httpx.Request], Handler]:
    """A handler answering ``status`` with ``body`` as JSON, and the list of requests it was sent (read)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(status, json=body, headers=headers)

    return seen, handler


def raising(error: Exception) -> Handler:
    """A handler that fails every request with ``error`` (e.g. ``httpx.ConnectError``)."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


# --- storage and the service around a policy --------------------------------------------------


def migrated_engine(data_dir: Path) -> Engine:
    """The test's database (SQLite in ``data_dir``, or its PostgreSQL database), migrated."""
    engine = make_engine(database_url(data_dir))
    migrate(engine)
    return engine


def make_service(
    data_dir: Path,
    *providers: Any,
    policy: FallbackPolicy | None = None,
    engine: Engine | None = None,
    blobs: BlobStore | None = None,
    **options: Any,
) -> ChatService:
    """A service on ``data_dir`` (the database file, ``images/`` beside it unless ``blobs`` says
    where images go) answering through ``policy`` or else ``single_try(*providers)``; the engine
    is migrated here unless given; ``options`` go to ``ChatService`` (e.g. ``guard``)."""
    return ChatService(
        engine=engine if engine is not None else migrated_engine(data_dir),
        blobs=blobs if blobs is not None else DiskBlobStore(data_dir / "images"),
        policy=policy if policy is not None else single_try(*providers),
        **options,
    )


def emulator_providers(
    http: httpx.Client, emulator_url: str, key: str, **client_options: Any
) -> dict[str, GeminiClient | OpenAIImagesClient]:
    """The real Gemini and OpenAI clients, both at the emulator on ``key`` (``client_options``: e.g. ``timeout_s``)."""
    return {
        "gemini": GeminiClient(http, api_key=SecretStr(key), base_url=emulator_url, **client_options),
        "openai": OpenAIImagesClient(
            http, api_key=SecretStr(key), base_url=f"{emulator_url}/v1", **client_options
        ),
    }


def make_library(
    data_dir: Path, engine: Engine, service: ChatService, *, blobs: BlobStore | None = None, **options: Any
) -> ConversationLibrary:
    """The library on the same files as ``service``, behind its gate (``options``: e.g. ``guard``)."""
    return ConversationLibrary(
        engine=engine,
        blobs=blobs if blobs is not None else DiskBlobStore(data_dir / "images"),
        gate=service.gate,
        **options,
    )


def _shown(step: Any) -> Any:
    """A service Step as the conversation it carries; anything else (a page update) as it is."""
    return step.conversation if isinstance(step, Step) else step


async def collect(steps: AsyncIterable[Any]) -> list[Any]:
    """Every snapshot a streaming call yields (the conversations of a service's steps)."""
    return [_shown(step) async for step in steps]


async def last(steps: AsyncIterable[Any]) -> Any:
    """The final snapshot a streaming call yields (None if it yields nothing)."""
    result = None
    async for result in steps:  # noqa: B007 - the final snapshot is the answer
        pass
    return _shown(result)
