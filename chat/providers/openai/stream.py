"""OpenAI's image stream (``stream=true``), read in the call's worker thread: drafts become
progress, the completed event becomes the answer, parsed as a plain response is.

Events (API reference "Image edit streaming events"; SDK ``image_edit_*_event.py``, and the
``image_generation.*`` twins for generations), each an SSE ``event:`` named like its ``type``:

- ``*.partial_image``: ``b64_json``, ``partial_image_index``, ``size``, ``quality``,
  ``background``, ``output_format``, ``created_at``: a draft, only ever shown;
- ``*.completed``: the final ``b64_json`` and ``usage`` (no index): the answer;
- an event whose data holds ``error`` (``{"type": "error", "error": {message, type, param,
  code}}``): the SDK's ``Stream`` raises ``APIError`` for any such event, and so do we, as the
  same error would be mapped as a response.

The final image may come before all the drafts asked for (SDK ``partial_images``), so the
drafts billed are the ones received. A stream that ends before ``completed`` is no answer.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from typing import Any

import httpx
import orjson
import pybase64

from chat.domain import ImageData, Phase, Progress, ProgressSink, ProviderReply, mime_for
from chat.errors import ProviderError, UnavailableError
from chat.providers.http import CallStop
from chat.providers.openai.wire import PROVIDER, error_from_response, parse_response
from chat.providers.sse import iter_sse

__all__ = ["error_from_event", "read_stream", "refuses_streaming"]

_STREAM_PARAMS = frozenset({"stream", "partial_images"})
_B64_VALUE = re.compile(rb'"b64_json"\s*:\s*"')  # where the image's base64 string begins
#: The status an error event's error would have had as a response, so it maps the same way.
_EVENT_STATUS = {
    "invalid_request_error": 400,
    "image_generation_user_error": 400,
    "moderation_blocked": 400,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
}


def read_stream(
    response: httpx.Response,
    stop: CallStop,
    *,
    model: str,
    output_format: str | None,
    expected: int,
    progress: ProgressSink | None,
) -> ProviderReply:
    """The answer of a 200 stream; a DRAFT snapshot per partial image, FINAL when it completes.

    Drafts are decoded only when someone watches (``progress``). ``StoppedReading`` (from
    ``iter_sse``) ends the call when ``stop`` says so.
    """
    drafts: list[ImageData] = []
    received = 0
    for event in iter_sse(response, stop):
        payload = _payload(event.data)
        kind = str(payload.get("type") or event.event)
        if kind == "error" or "error" in payload:
            raise error_from_event(payload)
        if kind.endswith(".partial_image"):
            received += 1
            if progress is not None and (draft := _draft(payload, output_format)) is not None:
                drafts.append(draft)
                progress(_snapshot(Phase.DRAFT, model, drafts, expected))
        elif kind.endswith(".completed"):
            body = {
                "data": [{"b64_json": payload.get("b64_json")}],
                "output_format": payload.get("output_format"),
                "usage": payload.get("usage"),
            }
            reply = parse_response(body, model=model, output_format=output_format, partial_images=received)
            if progress is not None:
                progress(_snapshot(Phase.FINAL, model, drafts, expected))
            return reply
    raise UnavailableError(PROVIDER, "the image stream ended before the image was complete")


def refuses_streaming(status: int, body: object) -> bool:
    """Whether a 400 refuses the stream itself (its ``param`` names ``stream`` or ``partial_images``)."""
    error = body.get("error") if isinstance(body, Mapping) else None
    return status == 400 and isinstance(error, Mapping) and error.get("param") in _STREAM_PARAMS


def error_from_event(payload: Mapping[str, Any]) -> ProviderError:
    """An error event as the error type the same error gets as a response (a 5xx when unnamed)."""
    error = payload.get("error")
    error = error if isinstance(error, Mapping) else payload
    status = _EVENT_STATUS.get(str(error.get("code") or "")) or _EVENT_STATUS.get(
        str(error.get("type") or "")
    )
    return error_from_response(status or 500, {"error": error}, {})


def _payload(data: bytes) -> Mapping[str, Any]:
    """The event's JSON, its image's base64 (``b64_json``) as bytes taken straight from the event.

    An image event is ~3 MB, nearly all of it one base64 string: orjson spends ~3 ms validating
    that string as UTF-8 and copying it into a ``str``, more than the rest of the event's handling
    (bench/streaming_openai.py). Base64 holds no quote or backslash, so when the value between
    ``"b64_json": "`` and the next quote has no backslash (an escape would need a real parse), it is
    cut out, the rest parsed as JSON with an empty string there, and the base64 checked where it
    is decoded (``pybase64`` with ``validate=True``).
    """
    image: memoryview | None = None
    if found := _B64_VALUE.search(data):
        begin = found.end()
        end = data.find(b'"', begin)
        if end != -1 and data.find(b"\\", begin, end) == -1:
            image, data = memoryview(data)[begin:end], data[:begin] + data[end:]  # the image not copied
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        raise UnavailableError(PROVIDER, "the answer was not valid JSON", status_code=200)
    if image is not None:
        payload["b64_json"] = image
    return payload


def _base64(value: object) -> memoryview | str:
    """``b64_json`` as ``_payload`` left it (a view of the event's bytes) or as JSON gave it (a str)."""
    return value if isinstance(value, memoryview | str) else ""


def _draft(payload: Mapping[str, Any], output_format: str | None) -> ImageData | None:
    """A partial image to show; a corrupt one is not shown (the answer does not depend on it)."""
    try:
        data = pybase64.b64decode(_base64(payload.get("b64_json")), validate=True)
    except (binascii.Error, ValueError):
        return None
    fmt = str(payload.get("output_format") or output_format or "png")
    return ImageData(data, mime_for(fmt)) if data else None


def _snapshot(phase: Phase, model: str, drafts: list[ImageData], expected: int) -> Progress:
    return Progress(PROVIDER, phase, model=model, drafts=tuple(drafts), drafts_expected=expected)
