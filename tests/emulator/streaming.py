"""``streamGenerateContent``: the answer ``generateContent`` gives, split into the chunks the real
service streams (reference §7, §12).

- Every chunk is a whole ``GenerateContentResponse`` with only its new parts, ``modelVersion`` and
  ``responseId``; ``promptFeedback`` rides on the first, ``finishReason`` and the full
  ``usageMetadata`` on the last *content* chunk (the SDK drops a streamed turn from its chat history
  when a chunk has no content, so there is no content-less closing chunk).
- Text comes in pieces of a few words; the signature of a text part rides on its last piece, or
  (models with thought images, as Pro) on an empty-text part of its own that follows.
- Every image, thought image or final, comes whole in one event with its signature in the part.
- A blocked prompt, ``IMAGE_SAFETY`` or an empty candidate is one chunk: the non-streamed body.

``?alt=sse`` answers Server-Sent Events (``data: <json>`` and a blank line, CRLF as Google sends);
without it, one JSON array of the chunks. Stream faults (see :mod:`.faults`): ``stream_cut`` drops
the connection after the first thought image (or half the chunks), without the chunked body's
end; ``stream_error`` sends an ``{"error": ...}`` event there and ends the stream as a 200.
``drip:N`` (or ``create_app(chunk_delay_ms=...)``) waits between chunks, so a client can be
stopped mid-stream; how each stream ended goes into its request-log entry (``"stream"``) and
``EmulatorState.stream_ends``.

Each thought image (a draft) sent is noted in the entry too, as ``"drafts": [{"sha256", "sent_at"}]``:
the sha256 of its decoded bytes (what the app names the draft's staged file by) and the wall clock
(``time.time()``) just before the event goes to the socket, so a benchmark on the same machine
pairs it with the moment a browser shows that draft (bench/progress_latency.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from .state import EmulatorState

__all__ = ["StreamCut", "split", "stream_response"]

_WORDS = re.compile(r"\S+\s*")
_ENVELOPE = ("modelVersion", "responseId")
_SIGNATURE = "thoughtSignature"
_OVERLOADED = {
    "error": {
        "code": 503,
        "message": "The model is overloaded. Please try again later.",
        "status": "UNAVAILABLE",
    }
}


class StreamCut(Exception):
    """Raised inside a streamed body to drop the connection mid-way (the ``stream_cut`` fault)."""


class _QuietCut(logging.Filter):
    """The cut is the fault asked for: uvicorn's "Exception in ASGI application" for it is no error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


_QUIET = _QuietCut()
if _QUIET not in logging.getLogger("uvicorn.error").filters:
    logging.getLogger("uvicorn.error").addFilter(_QUIET)


def _pieces(text: str, count: int = 3) -> list[str]:
    """``text`` in about ``count`` pieces of whole words (one piece if it is short)."""
    words = _WORDS.findall(text)
    if len(words) < 2:
        return [text]
    size = -(-len(words) // count)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def _split_part(part: dict[str, Any], signature_apart: bool) -> list[dict[str, Any]]:
    if "text" not in part:
        return [part]
    rest = {k: v for k, v in part.items() if k not in ("text", _SIGNATURE)}
    pieces = [{"text": piece, **rest} for piece in _pieces(part["text"])]
    if _SIGNATURE in part:
        if signature_apart:
            pieces.append({"text": "", _SIGNATURE: part[_SIGNATURE]})
        else:
            pieces[-1][_SIGNATURE] = part[_SIGNATURE]
    return pieces


def split(body: dict[str, Any], *, signature_apart: bool = False) -> list[dict[str, Any]]:
    """The chunks that stream ``body`` (a ``generateContent`` answer), one part each."""
    envelope = {k: body[k] for k in _ENVELOPE if k in body}
    candidates = body.get("candidates") or []
    parts = ((candidates[0].get("content") or {}).get("parts") or []) if candidates else []
    if not parts:
        return [body]
    candidate = {k: v for k, v in candidates[0].items() if k != "content"}
    pieces = [piece for part in parts for piece in _split_part(part, signature_apart)]
    chunks: list[dict[str, Any]] = []
    for n, piece in enumerate(pieces):
        last = n == len(pieces) - 1
        fields = candidate if last else {"index": candidate.get("index", 0)}
        chunk: dict[str, Any] = {"candidates": [{"content": {"parts": [piece], "role": "model"}, **fields}]}
        if n == 0 and "promptFeedback" in body:
            chunk["promptFeedback"] = body["promptFeedback"]
        if last and "usageMetadata" in body:
            chunk["usageMetadata"] = body["usageMetadata"]
        chunks.append(chunk | envelope)
    return chunks


def _break_at(chunks: list[dict[str, Any]]) -> int:
    """Where a stream fault strikes: after the first thought image, else after half the chunks."""
    for n, chunk in enumerate(chunks):
        part = chunk["candidates"][0]["content"]["parts"][0] if chunk.get("candidates") else {}
        if part.get("thought") and "inlineData" in part:
            return n + 1
    return max(1, len(chunks) // 2)


def _draft_sha256(chunk: dict[str, Any]) -> str | None:
    """The sha256 of a chunk's thought image (hex, of the decoded bytes), None for any other chunk."""
    candidates = chunk.get("candidates") or [{}]
    parts = (candidates[0].get("content") or {}).get("parts") or [{}]
    inline = parts[0].get("inlineData") if parts[0].get("thought") else None
    return hashlib.sha256(base64.b64decode(inline["data"])).hexdigest() if inline else None


def stream_response(
    chunks: list[dict[str, Any]] | bytes,
    *,
    sse: bool,
    state: EmulatorState,
    entry: dict[str, Any],
    delay_s: float,
    fault: str | None = None,
) -> Response:
    """The streamed answer; ``chunks`` as bytes is one malformed event (the ``malformed`` fault)."""
    if not sse:
        if isinstance(chunks, bytes):
            return Response(chunks, media_type="application/json")
        return Response(orjson.dumps(chunks), media_type="application/json")
    return StreamingResponse(_events(chunks, state, entry, delay_s, fault), media_type="text/event-stream")


async def _events(
    chunks: list[dict[str, Any]] | bytes,
    state: EmulatorState,
    entry: dict[str, Any],
    delay_s: float,
    fault: str | None,
) -> AsyncIterator[bytes]:
    datas = [chunks] if isinstance(chunks, bytes) else [orjson.dumps(c) for c in chunks]
    drafts = [None] if isinstance(chunks, bytes) else [_draft_sha256(c) for c in chunks]
    stop_at = _break_at(chunks) if fault and not isinstance(chunks, bytes) else len(datas)
    ended = "disconnected"
    sent: list[dict[str, Any]] = []
    entry["drafts"] = sent
    try:
        for n, data in enumerate(datas[:stop_at]):
            if n and delay_s:
                await asyncio.sleep(delay_s)
            if drafts[n] is not None:
                sent.append({"sha256": drafts[n], "sent_at": time.time()})
            yield b"data: " + data + b"\r\n\r\n"
        if fault == "stream_cut":
            ended = "cut"
            raise StreamCut
        if fault == "stream_error":
            yield b"data: " + orjson.dumps(_OVERLOADED) + b"\r\n\r\n"
        ended = "complete"
    finally:
        entry["stream"] = ended
        state.stream_ends.put(ended)
