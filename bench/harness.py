"""In-process conversations for the overhead and replay-growth benchmarks.

The real ``ChatService`` (wired like ``app.build_app``: Gemini then OpenAI, retries, the Guard)
on real storage in a temporary directory, talking through a real ``GeminiClient`` and httpx to
the provider emulator in a process of its own (``python -m tests.emulator``), as a real
provider's work is not done on the app's CPU or under its GIL.


What is measured, per turn:

- ``wall_s``: ``service.send(...)`` from the call until its last yield (the answer is stored).
- ``http_s``: time inside the httpx transport, request sent -> whole response body read
  (:class:`TimedTransport`); ``overhead_s = wall_s - http_s``.
- ``request_bytes``: the JSON body exactly as the client sent it; ``prompt_tokens``: the
  emulator's ``usageMetadata.promptTokenCount``, as stored on the answer.
- ``phases``: where the app's own time goes, by wrapping (at run time, in this process only)
  the steps of a turn; ``other`` is the rest (event-loop and thread hand-offs, the policy).

Answers: the emulator "edits" by blending the input with a flat tint, so after a few turns its
images lose all detail and compress to a fraction of a real photo. With ``answers="photo"``
(the default) each answer image is swapped, inside the transport (so outside the overhead), for
a distinct photo-like PNG of the same size, re-signed with the emulator's secret so the replay
still verifies. ``answers="emulator"`` keeps the emulator's own images.
"""

from __future__ import annotations

import base64
import functools
import json
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

import chat.conversation.fallback as fallback_module
import chat.conversation.service as service_module
import chat.conversation.turns as turns_module
import chat.providers.gemini.client as gemini_module
import chat.providers.http as http_module
from bench.common import emulator_process, photo
from chat.config import DEFAULTS
from chat.conversation.fallback import FallbackPolicy, RetryPolicy
from chat.conversation.service import Attachment, ChatService
from chat.domain import GenerationOptions, TurnStatus
from chat.limits.guard import Guard, Limits
from chat.providers.gemini import GeminiClient
from chat.providers.openai import OpenAIImagesClient
from chat.sharing.access import Actor, Gatekeeper
from storage import DiskBlobStore, make_engine, migrate, sqlite_url
from storage.blobs import DiskBlobStore as BlobStoreClass
from tests.emulator import DEFAULT_SECRET, signatures
from tests.emulator import images as emulator_images
from tests.emulator.models import MODELS

ACTOR = Actor("bench-owner-0123456789", visitor="127.0.0.1")
OPTIONS = GenerationOptions(model=DEFAULTS.gemini_model)
EDITS = (
    "make the sky stormy",
    "now remove the car",
    "warmer light",
    "add a rainbow over the hills",
    "make it look like late afternoon",
    "remove the people on the left",
    "more contrast in the foreground",
    "turn the red door blue",
    "add light rain",
    "crop tighter on the house",
    "make the grass greener",
    "add a few birds in the sky",
    "soften the shadows",
    "give it a film look",
    "undo the film look, keep the birds",
)


# --- timing --------------------------------------------------------------------------------


class PhaseClock:
    """Seconds per named phase for the current turn (turns run one at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.phases: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.phases[name] = self.phases.get(name, 0.0) + seconds

    def take(self) -> dict[str, float]:
        with self._lock:
            phases, self.phases = self.phases, {}
        return phases

    def wrap(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - started)

        return timed


#: (object, attribute, phase). Top-level phases run one after another and add up with
#: ``provider_http`` and ``other`` to the turn; names starting with "  " run inside another.
PHASES: tuple[tuple[Any, str, str], ...] = (
    (ChatService, "_prepare", "decode upload"),
    (Gatekeeper, "grant", "access check"),
    # Since 7c9aba1 admission reads the stored conversation (what it has cost) before the lock.
    (ChatService, "_admit", "admission (load conversation, rate limits)"),
    (Guard, "admit", "  rate limits"),
    (ChatService, "_store_message", "store user turn"),
    (GeminiClient, "_body", "request body (contents, base64, JSON)"),
    (gemini_module, "build_contents", "  build contents (read + base64)"),
    (http_module, "json_or_none", "JSON decode answer"),
    (gemini_module, "parse_reply", "parse answer (base64 decode)"),
    (fallback_module, "_check_images", "check answer image (PNG CRCs)"),
    # Since 7c9aba1 the answer is made into a turn, its blob written and the rows stored in one
    # worker job (ChatService._record); before, "answer -> turn (blob write)" was a step of its own.
    (ChatService, "_record", "answer -> turn, blob write, store answer + spend"),
    (service_module, "answer_turn", "  answer -> turn (sha256, image header)"),
    (Guard, "charge", "  spend"),
    (turns_module, "image_size", "  image header"),
    (BlobStoreClass, "put", "  blob write (+fsync)"),
    (service_module.repo, "get_conversation", "  load conversation"),
    (service_module.repo, "append_to", "  append turn rows"),
)
HTTPX_REQUEST = "httpx request"
PROVIDER_HTTP = "provider HTTP (excluded)"


@contextmanager
def instrumented(clock: PhaseClock) -> Iterator[list[str]]:
    """Wrap the steps of a turn with ``clock``; yields the phases that could not be found."""
    saved: list[tuple[Any, str, Any]] = []
    missing: list[str] = []
    for owner, attribute, phase in PHASES:
        original = (
            owner.__dict__.get(attribute) if isinstance(owner, type) else getattr(owner, attribute, None)
        )
        if original is None or not callable(original):
            missing.append(phase)
            continue
        saved.append((owner, attribute, original))
        setattr(owner, attribute, clock.wrap(original, phase))
    try:
        yield missing
    finally:
        for owner, attribute, original in reversed(saved):
            setattr(owner, attribute, original)


class TimedClient(httpx.Client):
    """Times building the httpx request (the body is already bytes; ``json=`` would encode here)."""

    def __init__(self, clock: PhaseClock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clock = clock

    def build_request(self, *args: Any, **kwargs: Any) -> httpx.Request:
        started = time.perf_counter()
        try:
            return super().build_request(*args, **kwargs)
        finally:
            self._clock.add(HTTPX_REQUEST, time.perf_counter() - started)


@dataclass
class Call:
    request_bytes: int
    request_images: int
    response_bytes: int
    http_s: float  # everything inside the transport (excluded from overhead)
    rewrite_s: float  # of which: the harness's own work (photo-like answer, counting), not the provider's


class TimedTransport(httpx.BaseTransport):
    """Request sent -> response body read; optionally rewrites the answer image (see module doc)."""

    def __init__(self, clock: PhaseClock, rewrite: Callable[[bytes], bytes] | None = None) -> None:
        self._inner = httpx.HTTPTransport(
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20)
        )
        self._clock = clock
        self._rewrite = rewrite
        self.calls: list[Call] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        response = self._inner.handle_request(request)
        try:
            body = b"".join(response.iter_raw())
        finally:
            response.close()
        rewrite_started = time.perf_counter()
        if self._rewrite is not None and response.status_code == 200:
            body = self._rewrite(body)
        content = request.content
        images = content.count(b'"inlineData"')  # ~2 ms on 6 MB: the harness's, not the app's
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-length"]
        finished = time.perf_counter()
        self.calls.append(
            Call(
                request_bytes=len(content),
                request_images=images,
                response_bytes=len(body),
                http_s=finished - started,
                rewrite_s=finished - rewrite_started,
            )
        )
        self._clock.add(PROVIDER_HTTP, finished - started)
        return httpx.Response(response.status_code, headers=headers, content=body, request=request)

    def close(self) -> None:
        self._inner.close()


class PhotoAnswers:
    """Swaps each answer image for the next distinct photo-like PNG of the same size, re-signed."""

    def __init__(self, size: int, count: int, seed: int = 1000) -> None:
        self._pngs = [emulator_images.encode(photo(size, seed + i), "image/png") for i in range(count)]
        self._next = 0

    def __call__(self, body: bytes) -> bytes:
        payload = json.loads(body)
        family = MODELS[payload["modelVersion"]].family
        for candidate in payload.get("candidates", []):
            for part in (candidate.get("content") or {}).get("parts", []):
                inline = part.get("inlineData")
                if inline is None or part.get("thought"):
                    continue
                data = self._pngs[self._next % len(self._pngs)]
                self._next += 1
                inline["mimeType"] = "image/png"
                inline["data"] = base64.b64encode(data).decode("ascii")
                part["thoughtSignature"] = signatures.issue(DEFAULT_SECRET, family, "image", data)
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


# --- a conversation ------------------------------------------------------------------------


@dataclass
class TurnRecord:
    turn: int
    wall_s: float
    http_s: float
    rewrite_s: float
    request_bytes: int
    request_images: int
    response_bytes: int
    prompt_tokens: int | None
    cost_usd: float
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def overhead_s(self) -> float:
        return self.wall_s - self.http_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "turn": self.turn,
            "wall_ms": round(self.wall_s * 1000, 3),
            "http_ms": round(self.http_s * 1000, 3),
            "overhead_ms": round(self.overhead_s * 1000, 3),
            "request_bytes": self.request_bytes,
            "request_images": self.request_images,
            "response_bytes": self.response_bytes,
            "prompt_tokens": self.prompt_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "phases_ms": {k: round(v * 1000, 3) for k, v in self.phases.items()},
        }


@dataclass
class Bench:
    service: ChatService
    transport: TimedTransport
    clock: PhaseClock
    data_dir: Path
    clear_emulator_log: Callable[[], None]

    async def conversation(self, turns: int, upload: bytes) -> list[TurnRecord]:
        """One new conversation: a photo and an edit, then ``turns - 1`` more edits."""
        conversation_id: str | None = None
        records: list[TurnRecord] = []
        for index in range(turns):
            attachments = [Attachment("photo.jpg", upload)] if index == 0 else []
            text = EDITS[index % len(EDITS)]
            self.clock.take()
            calls_before = len(self.transport.calls)
            started = time.perf_counter()
            step = None
            async for step in self.service.send(  # noqa: B007 - the last snapshot is the stored answer
                ACTOR, conversation_id, text, attachments, options=OPTIONS
            ):
                pass
            wall = time.perf_counter() - started
            assert step is not None
            final = step.conversation
            answer = final.turns[-1]
            if answer.status is not TurnStatus.OK or answer.provider != "gemini":
                raise RuntimeError(f"turn {index + 1} was not answered by Gemini: {answer.error}")
            conversation_id = final.id
            calls = self.transport.calls[calls_before:]
            usage = answer.usage
            phases = self.clock.take()
            phases["other"] = wall - sum(v for k, v in phases.items() if not k.startswith("  "))
            records.append(
                TurnRecord(
                    turn=index + 1,
                    wall_s=wall,
                    http_s=sum(c.http_s for c in calls),
                    rewrite_s=sum(c.rewrite_s for c in calls),
                    request_bytes=sum(c.request_bytes for c in calls),
                    request_images=sum(c.request_images for c in calls),
                    response_bytes=sum(c.response_bytes for c in calls),
                    prompt_tokens=usage.input_tokens if usage else None,
                    cost_usd=answer.cost_usd,
                    phases=phases,
                )
            )
            self.clear_emulator_log()
        return records


def clear_log(admin: httpx.Client) -> None:
    """The emulator keeps every request it answered; drop them between turns (outside the timing)."""
    admin.delete("/_emulator/requests").raise_for_status()


@asynccontextmanager
async def bench_service(
    keep_images: int | None,
    *,
    answers: str = "photo",
    turns: int = 30,
    size: int = 1024,
    database_url: str | None = None,
) -> AsyncIterator[Bench]:
    """A fresh data directory, emulator process and service with ``keep_images`` (None: no bound);
    the database is SQLite in that directory unless ``database_url`` names another (empty) one."""
    clock = PhaseClock()
    rewrite = PhotoAnswers(size, turns) if answers == "photo" else None
    with (
        tempfile.TemporaryDirectory(prefix="retouch-bench-") as tmp,
        emulator_process() as emulator,
        httpx.Client(base_url=emulator.url) as admin,
    ):
        url = emulator.url
        data_dir = Path(tmp)
        engine = make_engine(database_url or sqlite_url(data_dir))
        migrate(engine)
        transport = TimedTransport(clock, rewrite)
        with TimedClient(clock, transport=transport) as http:
            # No CallThreads (app.py has them): each call hops through asyncio.to_thread, which
            # bench.overhead's --profile runs inline; turns run one at a time, so no pool is needed.
            gemini = GeminiClient(
                http, api_key=SecretStr("test-key"), base_url=url, timeout_s=180, keep_images=keep_images
            )
            openai = OpenAIImagesClient(http, api_key=SecretStr("test-key"), base_url=f"{url}/v1")
            policy = FallbackPolicy({"gemini": gemini, "openai": openai}, retry=RetryPolicy())
            guard = Guard(
                Limits(per_visitor_per_minute=10**6, per_visitor_per_day=10**6, global_per_minute=10**6),
                engine=engine,
            )
            service = ChatService(
                engine=engine, blobs=DiskBlobStore(data_dir / "images"), policy=policy, guard=guard
            )
            bench = Bench(service, transport, clock, data_dir, functools.partial(clear_log, admin))

            try:
                yield bench
            finally:
                engine.dispose()
