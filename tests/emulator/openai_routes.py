"""The OpenAI Images routes: ``POST /v1/images/edits`` (multipart) and ``POST /v1/images/generations`` (JSON).

They share the app's request log and fault queue with the Gemini routes (see
:mod:`.state`, :mod:`.faults`). Order of checks, as on the real service: the body
is read and logged first; then ``Authorization: Bearer`` (missing → 401, a key
starting with ``invalid`` → 401 ``invalid_api_key``); then an unreadable body
(400); then the model (404 ``model_not_found``; a key starting with ``unverified``
→ 403 organization not verified); then validation (400, :mod:`.openai_request`);
only then faults (queued first, then prompt markers) or the answer.

A streamed answer (``stream=true``) is ``text/event-stream``: each event an ``event:`` line
named like its ``type`` and one ``data:`` line. The latency is spread over it as a provider
spreads its work: the first draft leaves as soon as it is rendered, draft ``i`` of ``K`` at
``i / K`` of ``latency_ms`` after the request arrived, the ``completed`` event at
``latency_ms`` (so a test can press Stop between drafts, and a bench can time the first one).

Request-log entries (``GET /_emulator/requests``)::

    {"provider": "openai", "path", "headers", "query", "model": as sent or null,
     "body": the JSON (or raw text when unparsable; null for a parsed form),
     "form": {name: value} of the scalar form fields, or null for JSON,
     "files": [{"field", "filename", "content_type", "size", "sha256"}, ...] in order,
     "request_id": the ``x-request-id`` answered, "status"}
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import faults as fault_mod
from . import openai_images
from .faults import Fault
from .openai_errors import (
    OpenAIError,
    fault_error,
    invalid,
    invalid_key,
    invalid_url,
    missing_key,
    unverified_organization,
)
from .openai_request import ImageRequest, Params, Upload, from_form, from_json, resolve_model, validate
from .state import EmulatorState, answer_after_latency, log_request, state_of

PROVIDER = "openai"
MAX_LOGGED_TEXT = 10_000
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you "
    "have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)"
)


def _bearer_key(req: Request) -> str | None:
    scheme, _, key = req.headers.get("authorization", "").partition(" ")
    return (key.strip() or None) if scheme.lower() == "bearer" else None


def _check_key(req: Request) -> str:
    key = _bearer_key(req)
    if key is None:
        raise missing_key()
    if key.startswith("invalid"):
        raise invalid_key(key)
    return key


def _scalar_fields(items: list[tuple[str, str | Upload]]) -> dict[str, str | list[str]]:
    """The non-file form fields for the log; a repeated name becomes a list."""
    fields: dict[str, str | list[str]] = {}
    for name, value in items:
        if isinstance(value, str):
            previous = fields.get(name)
            if previous is None:
                fields[name] = value
            else:
                fields[name] = [*(previous if isinstance(previous, list) else [previous]), value]
    return fields


async def _read_form(req: Request, raw: bytes, entry: dict[str, Any]) -> Params | OpenAIError:
    """Parse and log a multipart body; a parse problem is returned (reported after the key check)."""
    content_type = req.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        entry["body"] = raw[:MAX_LOGGED_TEXT].decode("utf-8", "replace")
        return invalid(
            f"Invalid Content-Type header ({content_type or 'none'}), expected multipart/form-data. (HINT: If "
            "you're using curl, you can pass -F 'key=value' to send multipart/form-data)"
        )
    try:
        form = await req.form()
    except HTTPException as exc:
        entry["body"] = raw[:MAX_LOGGED_TEXT].decode("utf-8", "replace")
        return invalid(f"Could not parse multipart form: {exc.detail}")
    try:
        items: list[tuple[str, str | Upload]] = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                content = (value.content_type or "application/octet-stream").split(";")[0].strip().lower()
                items.append((name, Upload(name, value.filename, content, data)))
            else:
                items.append((name, value))
    finally:
        await form.close()
    scalars = _scalar_fields(items)
    entry["form"] = scalars
    entry["files"] = [value.describe() for _, value in items if isinstance(value, Upload)]
    model = scalars.get("model")
    entry["model"] = model if isinstance(model, str) else None
    try:
        return from_form(items)
    except OpenAIError as exc:
        return exc


def _read_json(raw: bytes, entry: dict[str, Any]) -> Params | OpenAIError:
    try:
        body = json.loads(raw)
    except ValueError:
        entry["body"] = raw[:MAX_LOGGED_TEXT].decode("utf-8", "replace")
        return invalid(_BAD_JSON)
    entry["body"] = body
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        entry["model"] = body["model"]
    try:
        return from_json(body)
    except OpenAIError as exc:
        return exc


async def _handle(req: Request, endpoint: str) -> Response:
    state = state_of(req)
    request_id = f"req_{uuid4().hex}"
    arrived = time.monotonic()
    raw = await req.body()
    entry = log_request(
        state, req, PROVIDER, model=None, body=None, form=None, files=[], request_id=request_id
    )
    try:
        params = await _read_form(req, raw, entry) if endpoint == "edits" else _read_json(raw, entry)
        key = _check_key(req)
        if isinstance(params, OpenAIError):
            raise params
        model = resolve_model(params)
        if key.startswith("unverified"):
            raise unverified_organization(model.id)
        parsed = await run_in_threadpool(validate, params, model, endpoint)
        response = await _answer(state, parsed, arrived)
    except OpenAIError as exc:
        response = exc.response()
    if not isinstance(response, StreamingResponse):  # a stream spreads the latency over its events
        await answer_after_latency(state, arrived)
    response.headers["x-request-id"] = request_id

    entry["status"] = response.status_code
    return response


async def _answer(state: EmulatorState, req: ImageRequest, arrived: float) -> Response:
    try:
        chosen = fault_mod.parse_markers(req.prompt, PROVIDER)
    except ValueError as exc:
        raise invalid(f"Retouch emulator: {exc}", "prompt") from exc
    queued = fault_mod.take_queued(state.faults, PROVIDER)
    if queued is not None:
        chosen.insert(0, queued)
    for fault in chosen:
        if fault.name == "slow":
            await asyncio.sleep(fault.seconds)
            continue
        error = fault_error(
            Fault("500") if fault.name == "stream_error" and not req.stream else fault, req.model.id
        )
        if error is not None:
            raise error
        if req.stream:
            return _streamed(state, req, arrived, fault.name)
        if fault.name in ("malformed", "stream_cut"):
            return Response(
                await run_in_threadpool(openai_images.malformed, req), media_type="application/json"
            )
        if fault.name == "empty":
            return JSONResponse(openai_images.body(req, []))
        if fault.name == "truncated_b64":
            outputs = await run_in_threadpool(openai_images.render, req)
            return JSONResponse(openai_images.body(req, outputs, truncate=True))
        raise AssertionError(f"unhandled OpenAI fault {fault.spec!r}")  # pragma: no cover
    if req.stream:
        return _streamed(state, req, arrived, None)
    return JSONResponse(await run_in_threadpool(openai_images.success, req))


def _event(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()


def _streamed(
    state: EmulatorState, req: ImageRequest, arrived: float, fault: str | None
) -> StreamingResponse:
    """The server-sent events of a streamed answer (see the module docstring), ``fault`` applied."""

    async def events() -> AsyncIterator[bytes]:
        drafts, final = await run_in_threadpool(openai_images.render_stream, req)
        latency = state.latency_ms / 1000
        for index, draft in enumerate(drafts):
            if index:
                await _until(arrived + latency * index / len(drafts))
            yield _event(openai_images.partial_event(req, draft, index))
            if fault in ("stream_cut", "stream_error"):
                break
        if fault == "stream_cut":
            return
        if fault == "stream_error":
            error = fault_error(Fault("500"), req.model.id)
            assert error is not None
            yield _event({"type": "error", **error.body()})
            return
        await _until(arrived + latency)
        completed = openai_images.completed_event(
            req, b"" if fault == "empty" else final, truncate=fault == "truncated_b64"
        )
        event = _event(completed)
        if fault == "malformed":
            event = event[: len(event) // 2] + b"\n\n"
        yield event

    return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


async def _until(moment: float) -> None:
    remaining = moment - time.monotonic()
    if remaining > 0:
        await asyncio.sleep(remaining)


async def images_edits(req: Request) -> Response:
    return await _handle(req, "edits")


async def images_generations(req: Request) -> Response:
    return await _handle(req, "generations")


def owns(path: str) -> bool:
    """Whether an unknown path or method should be answered in the OpenAI envelope."""
    return path.startswith("/v1/images")


def http_error(req: Request, status: int) -> Response:
    """404/405 for ``/v1/images...``: the real API's ``Invalid URL (METHOD /path)``."""
    return invalid_url(req.method, req.url.path, status if status in (404, 405) else 404).response()


ROUTES: list[Route] = [
    Route("/v1/images/edits", images_edits, methods=["POST"]),
    Route("/v1/images/generations", images_generations, methods=["POST"]),
]
