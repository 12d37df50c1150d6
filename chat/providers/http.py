"""The shared HTTP edge: transport failures mapped to our error types in one place."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from chat.errors import ProviderTimeoutError, UnavailableError

__all__ = ["map_transport_errors", "parse_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s?\s*$")


def parse_duration(value: object) -> float | None:
    """'37s', '1.5s' (google.rpc.RetryInfo) or '12' (Retry-After) to seconds; None if unreadable."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1))
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
