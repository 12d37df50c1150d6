"""The Starlette app: Gemini ``generateContent`` and OpenAI Images routes plus test-only control routes.

Routes (one port for both providers):

- ``POST /v1beta/models/{model}:generateContent`` (and ``/v1/...``): the emulated Gemini API;
  ``:streamGenerateContent`` streams the same answer (``?alt=sse``: Server-Sent Events; without:
  a JSON array of the chunks), see :mod:`.streaming`.
- ``POST /v1/images/edits`` (multipart) and ``POST /v1/images/generations`` (JSON): the
  emulated OpenAI Images API, base URL ``{emulator}/v1`` (see :mod:`.openai_routes`).
- ``GET /_emulator/requests``: received generate/edit requests of both providers, oldest
  first (at most 200). Gemini entries are ``{"provider": "gemini", "path", "model",
  "headers", "query", "body", "status"}``, a streamed one also ``"stream"`` (how it ended) and
  ``"drafts"`` (each thought image sent: ``{"sha256", "sent_at"}``, see :mod:`.streaming`); OpenAI entries are described in
  :mod:`.openai_routes` (form fields and file hashes instead of multipart bytes).
  Headers are lower-cased and include the API key (this is a test tool).
- ``DELETE /_emulator/requests``: clear that log.
- ``GET /_emulator/received``: every request line received, oldest first (at most 1000), whatever
  its path, as ``{"method", "target", "status"}``: ``target`` is the path as sent (still
  percent-encoded) plus ``?query`` if any; ``status`` is what was answered (404 for an unknown
  path, as the real APIs do), None while answering. The control routes themselves are left out.
  ``DELETE`` clears it.
- ``POST /_emulator/faults`` ``{"faults": ["503", "openai:429", "slow:1", ...]}``: queue
  faults for the next generate/edit requests of either provider (one shared queue;
  ``gemini:`` / ``openai:`` prefixes pick a provider, see :mod:`tests.emulator.faults`);
  ``GET`` lists the queue, ``DELETE`` clears it.
- ``GET /_emulator/health``: ``{"status": "ok", "models", "openai_models", ...}``.

State lives on ``app.state.emulator`` (:mod:`.state`) so several apps (e.g. one per test)
never share it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import faults as fault_mod
from . import gemini, openai_routes, request, streaming
from .errors import ApiError, invalid
from .models import MODELS
from .openai_models import MODELS as OPENAI_MODELS
from .state import (
    DEFAULT_SECRET,
    MAX_LOGGED_REQUESTS,
    MAX_RECEIVED,
    EmulatorState,
    StockImage,
    answer_after_latency,
    log_request,
    state_of,
)

__all__ = ["DEFAULT_SECRET", "MAX_LOGGED_REQUESTS", "MAX_RECEIVED", "EmulatorState", "create_app"]

_MISSING_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)


def _check_key(req: Request) -> None:
    key = req.headers.get("x-goog-api-key") or req.query_params.get("key")
    if not key:
        raise ApiError(403, _MISSING_KEY, "PERMISSION_DENIED")
    if key.startswith("invalid"):
        raise ApiError(
            400,
            "API key not valid. Please pass a valid API key.",
            "INVALID_ARGUMENT",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ],
        )
    if key.startswith("denied"):
        raise ApiError(403, "The caller does not have permission", "PERMISSION_DENIED")


def _log(state: EmulatorState, req: Request, model: str, raw: bytes) -> tuple[dict[str, Any], Any]:
    """Record the request before anything can fail; return the entry and the parsed body (or None)."""
    try:
        body: Any = json.loads(raw)
        parsed: Any = body
    except ValueError:
        body, parsed = raw.decode("utf-8", "replace"), None
    return log_request(state, req, "gemini", model=model, body=body), parsed


async def generate_content(req: Request) -> Response:
    return await _answer(req, streamed=False)


async def stream_generate_content(req: Request) -> Response:
    return await _answer(req, streamed=True)


async def _answer(req: Request, *, streamed: bool) -> Response:
    state = state_of(req)
    version = req.url.path.split("/", 2)[1]
    model = req.path_params["model"]
    arrived = time.monotonic()
    raw = await req.body()
    entry, body = _log(state, req, model, raw)
    try:
        _check_key(req)
        answer = await _generate(state, version, model, raw, body)
        response = answer.response(req, state, entry) if streamed else answer.whole()
    except ApiError as exc:
        response = exc.response()
    await answer_after_latency(state, arrived)
    entry["status"] = response.status_code
    return response


class _Answer:
    """A 200 answer, sent whole (``generateContent``) or in chunks (``streamGenerateContent``).

    ``body`` as bytes is the ``malformed`` fault's cut-off JSON. A stream fault (``stream_cut``,
    ``stream_error``) strikes a stream half-way; a whole answer cannot fail half-way, so there it
    is ``cut`` (the malformed body) or the 503.
    """

    def __init__(
        self,
        body: dict[str, Any] | bytes,
        *,
        model: str,
        signature_apart: bool,
        delay_s: float | None,
        fault: str | None = None,
        cut: bytes = b"",
    ) -> None:
        self.body = body
        self.model = model
        self.signature_apart = signature_apart
        self.delay_s = delay_s
        self.fault = fault
        self.cut = cut

    def whole(self) -> Response:
        if self.fault == "stream_error":
            raise fault_mod.http_error(fault_mod.Fault("503"), self.model) or AssertionError(
                "503 has an error"
            )
        body = self.cut if self.fault == "stream_cut" else self.body
        if isinstance(body, bytes):
            return Response(body, media_type="application/json")
        # orjson: ~0.5 ms for an answer with a 1K image where json.dumps takes ~4 (the CPU is shared with the app).
        return Response(orjson.dumps(body), media_type="application/json")

    def response(self, req: Request, state: EmulatorState, entry: dict[str, Any]) -> Response:
        body = self.body
        chunks = (
            body if isinstance(body, bytes) else streaming.split(body, signature_apart=self.signature_apart)
        )
        delay = self.delay_s if self.delay_s is not None else state.chunk_delay_ms / 1000
        sse = req.query_params.get("alt") == "sse"
        return streaming.stream_response(
            chunks, sse=sse, state=state, entry=entry, delay_s=delay, fault=self.fault
        )


async def _generate(state: EmulatorState, version: str, model: str, raw: bytes, body: Any) -> _Answer:
    spec = MODELS.get(model)
    if spec is None:
        raise ApiError(
            404,
            f"models/{model} is not found for API version {version}, or is not supported for "
            "generateContent. Call ListModels to see the list of available models and their supported methods.",
            "NOT_FOUND",
        )
    if body is None:
        raise invalid("Invalid JSON payload received. Unexpected token.")

    def validate() -> request.GenerateRequest:
        parsed = request.parse(body, spec)
        request.check_signatures(parsed, state.secret)
        return parsed

    parsed = await run_in_threadpool(validate)
    chosen = fault_mod.markers(parsed.latest_user_text, "gemini")
    queued = fault_mod.take_queued(state.faults, "gemini")
    if queued is not None:
        chosen.insert(0, queued)
    signer = gemini.Signer(state.secret, spec.family, state.signature_filler)
    # Where a text part's signature rides in a stream (see .streaming): its own part on Pro.
    shape: dict[str, Any] = {"model": model, "signature_apart": spec.thought_images, "delay_s": None}

    stream_fault: str | None = None
    for fault in chosen:
        if fault.name == "slow":
            await asyncio.sleep(fault.seconds)
            continue
        if fault.name == "drip":
            shape["delay_s"] = fault.seconds
            continue
        if fault.name in ("stream_cut", "stream_error"):
            stream_fault = fault.name
            break
        error = fault_mod.http_error(fault, model)
        if error is not None:
            raise error
        if fault.name == "malformed":
            return _Answer(gemini.malformed_body(parsed, signer, raw), **shape)
        return _Answer(gemini.fault_body(fault, parsed, signer, raw), **shape)
    body = await run_in_threadpool(gemini.success, parsed, signer, raw, state.next_stock())
    cut = gemini.malformed_body(parsed, signer, raw) if stream_fault == "stream_cut" else b""
    return _Answer(body, fault=stream_fault, cut=cut, **shape)


async def list_requests(req: Request) -> Response:
    return JSONResponse(list(state_of(req).requests))


async def clear_requests(req: Request) -> Response:
    return _cleared(state_of(req).requests)


async def list_received(req: Request) -> Response:
    return JSONResponse(list(state_of(req).received))


async def clear_received(req: Request) -> Response:
    return _cleared(state_of(req).received)


def _cleared(log: deque[Any]) -> Response:
    count = len(log)
    log.clear()
    return JSONResponse({"cleared": count})


async def list_faults(req: Request) -> Response:
    return JSONResponse({"faults": [f.spec for f in state_of(req).faults]})


async def queue_faults(req: Request) -> Response:
    state = state_of(req)
    try:
        payload = await req.json()
        specs = payload["faults"]
        if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
            raise TypeError("faults must be a list of strings")
        new = [fault_mod.parse_fault(s) for s in specs]
    except (ValueError, KeyError, TypeError) as exc:
        return invalid(f"Retouch emulator: bad fault request: {exc}").response()
    state.faults.extend(new)
    return JSONResponse({"faults": [f.spec for f in state.faults]})


async def clear_faults(req: Request) -> Response:
    state = state_of(req)
    count = len(state.faults)
    state.faults.clear()
    return JSONResponse({"cleared": count})


async def health(req: Request) -> Response:
    state = state_of(req)
    return JSONResponse(
        {
            "status": "ok",
            "models": sorted(MODELS),
            "openai_models": sorted(OPENAI_MODELS),
            "latency_ms": state.latency_ms,
            "queued_faults": len(state.faults),
        }
    )


async def http_error(req: Request, exc: Exception) -> Response:
    """Unknown paths and wrong methods also answer in the Google envelope (OpenAI's under ``/v1/images``)."""
    code = exc.status_code if isinstance(exc, HTTPException) else 500
    if openai_routes.owns(req.url.path):
        return openai_routes.http_error(req, code)
    if code == 404:
        return ApiError(404, f"Method not found: {req.url.path}", "NOT_FOUND").response()
    return ApiError(code, str(getattr(exc, "detail", exc))).response()


class RecordReceived:
    """Note every request line before routing (so unknown paths are seen too); answers are untouched."""

    def __init__(self, app: ASGIApp, control: frozenset[tuple[str, str]]) -> None:
        self.app = app
        self.control = control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")  # raw_path is optional
        if (scope["method"], path) in self.control:
            await self.app(scope, receive, send)
            return
        query = scope["query_string"].decode("latin-1")
        target = f"{path}?{query}" if query else path
        entry: dict[str, Any] = {"method": scope["method"], "target": target, "status": None}
        scope["app"].state.emulator.received.append(entry)

        async def noting_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        await self.app(scope, receive, noting_status)


def create_app(
    latency_ms: float = 0,
    secret: bytes = DEFAULT_SECRET,
    chunk_delay_ms: float = 0,
    signature_filler: int = 256,
    stock: tuple[StockImage, ...] = (),
) -> Starlette:
    """Build an emulator app.

    ``latency_ms``: every generate/edit answer of both providers leaves that long after its request
    arrived, rendering included (simulates a slow provider);

    ``chunk_delay_ms``: a streamed answer waits that long between its chunks (a ``drip:N`` fault
    sets one request's);
    ``secret`` keys the thought signatures (same secret = signatures survive restarts);
    ``signature_filler`` pads each signature by that many bytes (real ones are MBs);
    ``stock``: ready Gemini answer images, used in turn instead of rendering.
    """
    routes = [
        Route(f"/{version}/models/{{model}}:{method}", handler, methods=["POST"])
        for version in ("v1beta", "v1")
        for method, handler in (
            ("generateContent", generate_content),
            ("streamGenerateContent", stream_generate_content),
        )
    ]
    routes += openai_routes.ROUTES
    control = [
        Route("/_emulator/requests", list_requests, methods=["GET"]),
        Route("/_emulator/requests", clear_requests, methods=["DELETE"]),
        Route("/_emulator/received", list_received, methods=["GET"]),
        Route("/_emulator/received", clear_received, methods=["DELETE"]),
        Route("/_emulator/faults", list_faults, methods=["GET"]),
        Route("/_emulator/faults", queue_faults, methods=["POST"]),
        Route("/_emulator/faults", clear_faults, methods=["DELETE"]),
        Route("/_emulator/health", health, methods=["GET"]),
    ]
    control_lines = frozenset((method, route.path) for route in control for method in route.methods or ())
    app = Starlette(
        routes=routes + control,
        exception_handlers={HTTPException: http_error},
        middleware=[Middleware(RecordReceived, control=control_lines)],
    )
    app.state.emulator = EmulatorState(
        latency_ms=latency_ms,
        secret=secret,
        signature_filler=signature_filler,
        stock=stock,
        chunk_delay_ms=chunk_delay_ms,
    )
    return app
