"""The Starlette app: Gemini ``generateContent`` routes plus test-only control routes.

Routes:

- ``POST /v1beta/models/{model}:generateContent`` (and ``/v1/...``): the emulated API.
- ``GET /_emulator/requests``: received generate requests, oldest first (at most 200),
  each ``{"path", "model", "headers", "query", "body", "status"}``; headers are
  lower-cased and include the API key (this is a test tool).
- ``DELETE /_emulator/requests``: clear that log.
- ``POST /_emulator/faults`` ``{"faults": ["503", "slow:1", ...]}``: queue faults for the
  next generate requests (see :mod:`tests.emulator.faults`); ``GET`` lists the queue,
  ``DELETE`` clears it.
- ``GET /_emulator/health``: ``{"status": "ok", ...}``.

State lives on ``app.state.emulator`` so several apps (e.g. one per test) never share it.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import faults as fault_mod
from . import gemini, request
from .errors import ApiError, invalid
from .faults import Fault
from .models import MODELS

DEFAULT_SECRET = b"retouch-emulator-dev-secret"
MAX_LOGGED_REQUESTS = 200

_MISSING_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)


@dataclass
class EmulatorState:
    """Per-app mutable state (request log and fault queue) and settings."""

    latency_ms: float = 0
    secret: bytes = DEFAULT_SECRET
    signature_filler: int = 256
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_LOGGED_REQUESTS))
    faults: deque[Fault] = field(default_factory=deque)


def _state(req: Request) -> EmulatorState:
    return req.app.state.emulator


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
    headers: dict[str, str] = {}
    for name, value in req.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    entry = {
        "path": req.url.path,
        "model": model,
        "headers": headers,
        "query": dict(req.query_params),
        "body": body,
        "status": None,
    }
    state.requests.append(entry)
    return entry, parsed


async def generate_content(req: Request) -> Response:
    state = _state(req)
    version = req.url.path.split("/", 2)[1]
    model = req.path_params["model"]
    raw = await req.body()
    entry, body = _log(state, req, model, raw)
    try:
        if state.latency_ms:
            await asyncio.sleep(state.latency_ms / 1000)
        _check_key(req)
        response = await _generate(state, version, model, raw, body)
    except ApiError as exc:
        response = exc.response()
    entry["status"] = response.status_code
    return response


async def _generate(state: EmulatorState, version: str, model: str, raw: bytes, body: Any) -> Response:
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
    chosen = fault_mod.markers(parsed.latest_user_text)
    if state.faults:
        chosen.insert(0, state.faults.popleft())
    signer = gemini.Signer(state.secret, spec.family, state.signature_filler)

    for fault in chosen:
        if fault.name == "slow":
            await asyncio.sleep(fault.seconds)
            continue
        error = fault_mod.http_error(fault, model)
        if error is not None:
            raise error
        if fault.name == "malformed":
            return Response(gemini.malformed_body(parsed, signer, raw), media_type="application/json")
        return JSONResponse(gemini.fault_body(fault, parsed, signer, raw))
    return JSONResponse(await run_in_threadpool(gemini.success, parsed, signer, raw))


async def list_requests(req: Request) -> Response:
    return JSONResponse(list(_state(req).requests))


async def clear_requests(req: Request) -> Response:
    state = _state(req)
    count = len(state.requests)
    state.requests.clear()
    return JSONResponse({"cleared": count})


async def list_faults(req: Request) -> Response:
    return JSONResponse({"faults": [f.spec for f in _state(req).faults]})


async def queue_faults(req: Request) -> Response:
    state = _state(req)
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
    state = _state(req)
    count = len(state.faults)
    state.faults.clear()
    return JSONResponse({"cleared": count})


async def health(req: Request) -> Response:
    state = _state(req)
    return JSONResponse(
        {
            "status": "ok",
            "models": sorted(MODELS),
            "latency_ms": state.latency_ms,
            "queued_faults": len(state.faults),
        }
    )


async def http_error(req: Request, exc: Exception) -> Response:
    """Unknown paths and wrong methods also answer in the Google envelope."""
    code = exc.status_code if isinstance(exc, HTTPException) else 500
    if code == 404:
        return ApiError(404, f"Method not found: {req.url.path}", "NOT_FOUND").response()
    return ApiError(code, str(getattr(exc, "detail", exc))).response()


def create_app(
    latency_ms: float = 0, secret: bytes = DEFAULT_SECRET, signature_filler: int = 256
) -> Starlette:
    """Build an emulator app.

    ``latency_ms`` delays every generate answer (simulates a slow provider);
    ``secret`` keys the thought signatures (same secret = signatures survive restarts);
    ``signature_filler`` pads each signature by that many bytes (real ones are MBs).
    """
    routes = [
        Route(f"/{version}/models/{{model}}:generateContent", generate_content, methods=["POST"])
        for version in ("v1beta", "v1")
    ]
    routes += [
        Route("/_emulator/requests", list_requests, methods=["GET"]),
        Route("/_emulator/requests", clear_requests, methods=["DELETE"]),
        Route("/_emulator/faults", list_faults, methods=["GET"]),
        Route("/_emulator/faults", queue_faults, methods=["POST"]),
        Route("/_emulator/faults", clear_faults, methods=["DELETE"]),
        Route("/_emulator/health", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.emulator = EmulatorState(
        latency_ms=latency_ms, secret=secret, signature_filler=signature_filler
    )
    return app
