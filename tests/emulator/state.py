"""Per-app emulator state shared by the Gemini and OpenAI routes: one request log, one record of
every request line received, one fault queue.

It lives on ``app.state.emulator`` so several apps (e.g. one per test) never share
it, and in its own module so the provider route modules can use it without
importing :mod:`.app` (which imports them).
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import time
from base64 import b64encode
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from .faults import Fault

DEFAULT_SECRET = b"retouch-emulator-dev-secret"
MAX_LOGGED_REQUESTS = 200
MAX_RECEIVED = 1000


@dataclass
class EmulatorState:
    """Per-app mutable state (request log, received request lines, fault queue) and settings."""

    latency_ms: float = 0
    secret: bytes = DEFAULT_SECRET
    signature_filler: int = 256
    #: Wait between the chunks of every streamed answer (a ``drip:N`` fault sets one request's).
    chunk_delay_ms: float = 0
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_LOGGED_REQUESTS))
    #: ``{"method", "target", "status"}`` of every request but the control routes', matched or not.
    received: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_RECEIVED))
    faults: deque[Fault] = field(default_factory=deque)
    #: Ready (mime type, image) answers for Gemini, used in turn instead of rendering (benchmarks:
    #: a remote provider's rendering does not take this machine's CPU). Empty: render.
    stock: tuple[StockImage, ...] = ()
    #: How each streamed answer ended ("complete", "cut", "disconnected"), in order: a test in the
    #: emulator's process waits on it (``get(timeout=...)``) instead of polling the request log.
    stream_ends: queue.SimpleQueue[str] = field(default_factory=queue.SimpleQueue)
    _served: itertools.count = field(default_factory=itertools.count)

    def next_stock(self) -> StockImage | None:
        return self.stock[next(self._served) % len(self.stock)] if self.stock else None


@dataclass(frozen=True)
class StockImage:
    """A ready answer image, its base64 text made once (a 1K photo is ~3 ms to encode)."""

    mime_type: str
    data: bytes
    base64: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base64", b64encode(self.data).decode("ascii"))


def state_of(req: Request) -> EmulatorState:
    return req.app.state.emulator


async def answer_after_latency(state: EmulatorState, arrived: float) -> None:
    """Hold an answer until ``latency_ms`` after its request arrived (``time.monotonic()``).

    A provider renders during its latency, so the emulator's own work counts towards it rather
    than adding to it; on a small machine its CPU then overlaps the wait, as a remote one would.
    """
    remaining = state.latency_ms / 1000 - (time.monotonic() - arrived)
    if remaining > 0:
        await asyncio.sleep(remaining)


def request_headers(req: Request) -> dict[str, str]:
    """Lower-cased headers; repeated ones joined with ``", "`` (keys included: this is a test tool)."""
    headers: dict[str, str] = {}
    for name, value in req.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def log_request(state: EmulatorState, req: Request, provider: str, **fields: Any) -> dict[str, Any]:
    """Append a log entry (``status`` None until answered) and return it for the handler to fill in."""
    entry: dict[str, Any] = {
        "provider": provider,
        "path": req.url.path,
        "headers": request_headers(req),
        "query": dict(req.query_params),
        **fields,
        "status": None,
    }
    state.requests.append(entry)
    return entry
