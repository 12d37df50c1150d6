"""The shared HTTP edge: transport failures mapped to our error types in one place, model ids
checked before they reach a URL or a body, and the key a call used kept out of its errors."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from pydantic import SecretStr

from chat.domain import ProviderReply
from chat.errors import (
    BadRequestError,
    MissingKeyError,
    ProviderError,
    ProviderTimeoutError,
    UnavailableError,
)
from chat.providers.model_ids import MODEL_ID_RULE, is_model_id

__all__ = [
    "api_key_for",
    "call_timeout",
    "checked_model",
    "json_or_none",
    "map_transport_errors",
    "parse_duration",
    "read_reply",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s?\s*$")


def parse_duration(value: object) -> float | None:
    """'37s', '1.5s' (google.rpc.RetryInfo) or '12' (Retry-After) to seconds; None if unreadable."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1))
    return None


def call_timeout(seconds: float) -> httpx.Timeout:
    """A model call's timeout: the whole call may take ``seconds``; connecting, at most 15 of them."""
    return httpx.Timeout(seconds, connect=min(seconds, 15.0))


def api_key_for(provider: str, env_name: str, visitor: SecretStr | None, server: SecretStr | None) -> str:
    """The key a call uses: the visitor's own if given, else the server's; MissingKeyError if neither."""
    chosen = visitor or server
    key = chosen.get_secret_value() if chosen else ""
    if not key:
        raise MissingKeyError(provider, env_name)
    return key


def checked_model(provider: str, model: str) -> str:
    """``model`` if it is shaped like a model id; else BadRequestError, before anything is sent.

    parse_options refuses such ids already; this is the last check before the id becomes part of
    a URL (Gemini) or a request body (OpenAI), whoever built the options.
    """
    if not is_model_id(model):
        raise BadRequestError(provider, f"the model id is malformed (use {MODEL_ID_RULE}); nothing was sent")
    return model


def json_or_none(response: httpx.Response) -> object:
    """The body as JSON, or None when it is not (an HTML error page, a cut-off answer)."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


@asynccontextmanager
async def map_transport_errors(provider: str) -> AsyncIterator[None]:
    """Re-raise httpx's network failures as the provider error a user and the fallback understand."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ProviderTimeoutError(provider, type(exc).__name__) from exc
    except httpx.TransportError as exc:
        raise UnavailableError(provider, f"connection failed ({type(exc).__name__})") from exc


async def read_reply(
    response: httpx.Response,
    provider: str,
    *,
    api_key: str,
    error: Callable[[object], ProviderError],
    parse: Callable[[dict[str, Any]], ProviderReply],
) -> ProviderReply:
    """The answer decoded and parsed in a worker thread: an answer with a 1K image is ~3 MB of JSON
    (~4 ms), and the event loop serves every other request meanwhile. A status other than 200
    raises ``error(body)``; a body that is not JSON is the provider being unavailable. Either way
    ``api_key``, the key the call used, is hidden from the error if the provider echoed it."""
    try:
        return await asyncio.to_thread(_read_reply, response, provider, error, parse)
    except ProviderError as exc:
        exc.hide(api_key)
        raise


def _read_reply(
    response: httpx.Response,
    provider: str,
    error: Callable[[object], ProviderError],
    parse: Callable[[dict[str, Any]], ProviderReply],
) -> ProviderReply:
    payload = json_or_none(response)
    if response.status_code != 200:
        raise error(payload)
    if not isinstance(payload, dict):
        raise UnavailableError(provider, "the answer was not valid JSON", status_code=200)
    return parse(payload)
