"""Gemini's ``streamGenerateContent?alt=sse`` events joined back into one ``generateContent`` body.

Each event is a whole ``GenerateContentResponse`` holding only that chunk's new parts (gemini-api.md
§7, §12): text comes in pieces, each image whole in one multi-MB event with its signature in the
same part, ``promptFeedback`` on the first chunk, ``finishReason`` and the full ``usageMetadata``
on the last. Joined here into the body the non-streaming path gets, the answer goes through the
same ``parse_response``: what is stored and replayed, and every error a body maps to, do not depend
on how the answer was read.

Joining rules: consecutive text pieces with the same ``thought`` flag are one part; a signature
on a piece, or on an empty-text part that follows, goes onto that part and closes it; every image
is its own part; parts keep their order. The part dicts (and so their signatures, 1-2 MB each)
are the ones orjson made: kept, never copied or re-encoded.

Along the way ``progress`` gets cumulative snapshots (thoughts, text, drafts), never a signature.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from typing import Any

import orjson
import pybase64

from chat.domain import ImageData, Phase, Progress, ProgressSink
from chat.errors import UnavailableError
from chat.providers.gemini.wire import PROVIDER, error_from_response
from chat.providers.sse import SseEvent

__all__ = ["StreamedAnswer", "read_stream"]

_CANDIDATE_CONTENT = "content"


class StreamedAnswer:
    """The answer so far: the envelope's latest fields, the candidate's fields, its joined parts."""

    def __init__(self, *, model: str, progress: ProgressSink | None = None) -> None:
        self._model = model
        self._progress = progress
        self._envelope: dict[str, Any] = {}
        self._candidate: dict[str, Any] | None = None
        self._parts: list[dict[str, Any]] = []
        self._pieces: list[str] = []  # the open text part's pieces (the part is ``self._parts[-1]``)
        self._open_thought: bool | None = None  # the open text part's flag; None: no part is open
        self._thoughts: list[str] = []
        self._text: list[str] = []
        self._drafts: tuple[ImageData, ...] = ()
        self.events = 0

    def add(self, chunk: dict[str, Any]) -> None:
        """One event's response; an ``{"error": ...}`` event raises the error it describes."""
        self.events += 1
        if "error" in chunk:
            error = chunk["error"]
            code = error.get("code") if isinstance(error, dict) else None
            raise error_from_response(code if isinstance(code, int) and code >= 400 else 500, chunk)
        candidates = chunk.pop("candidates", None) or []
        feedback = chunk.pop("promptFeedback", None)
        if feedback is not None and "promptFeedback" not in self._envelope:
            self._envelope["promptFeedback"] = feedback
        self._envelope.update(chunk)  # modelVersion, responseId, usageMetadata: the latest wins
        if not candidates:
            return
        candidate = candidates[0]
        content = candidate.pop(_CANDIDATE_CONTENT, None) or {}
        if self._candidate is None:
            self._candidate = {}
        self._candidate.update(candidate)  # finishReason, finishMessage, safetyRatings, index
        changed: Phase | None = None
        for part in content.get("parts") or ():
            changed = self._add_part(part) or changed
        if changed is not None:
            self._report(changed)

    def _add_part(self, part: dict[str, Any]) -> Phase | None:
        if "text" in part and "inlineData" not in part and "inline_data" not in part:
            return self._add_text(part)
        self._close_text()
        self._parts.append(part)
        inline = part.get("inlineData") or part.get("inline_data")
        if inline is None:
            return None
        if part.get("thought") is True:
            draft = _draft(inline)
            if draft is None:
                return None
            self._drafts += (draft,)
            return Phase.DRAFT
        return Phase.FINAL

    def _add_text(self, part: dict[str, Any]) -> Phase | None:
        thought = part.get("thought") is True
        piece = str(part["text"])
        if self._open_thought is thought:
            self._pieces.append(piece)
            extra = {k: v for k, v in part.items() if k != "text"}
            self._parts[-1].update(extra)  # a signature (on a piece or an empty part) joins the part
        else:
            self._close_text()
            self._parts.append(part)
            self._pieces = [piece]
            self._open_thought = thought
        if "thoughtSignature" in part or "thought_signature" in part:
            self._close_text()
        if not piece:
            return None
        (self._thoughts if thought else self._text).append(piece)
        return Phase.THINKING if thought else Phase.WRITING

    def _close_text(self) -> None:
        if self._open_thought is not None:
            self._parts[-1]["text"] = "".join(self._pieces)
            self._pieces = []
            self._open_thought = None

    def _report(self, phase: Phase) -> None:
        if self._progress is None:
            return
        self._progress(
            Progress(
                provider=PROVIDER,
                phase=phase,
                model=self._model,
                text="".join(self._text),
                thoughts="".join(self._thoughts),
                drafts=self._drafts,
            )
        )

    def body(self) -> dict[str, Any]:
        """The answer as one ``generateContent`` body; UnavailableError if the stream was cut short.

        A stream is whole when its answer has a ``finishReason``, or has no candidate at all (a
        blocked prompt: ``promptFeedback`` and no candidates, as the non-streaming answer).
        """
        self._close_text()
        if not self.events:
            raise UnavailableError(PROVIDER, "the stream ended before any answer", status_code=200)
        if self._candidate is not None and self._parts and not self._candidate.get("finishReason"):
            raise UnavailableError(
                PROVIDER, "the stream was cut off before the answer ended", status_code=200
            )
        body = dict(self._envelope)
        if self._candidate is not None:
            content = {"role": "model", "parts": self._parts} if self._parts else None
            body["candidates"] = [
                {**self._candidate, _CANDIDATE_CONTENT: content} if content else self._candidate
            ]
        return body


def _draft(inline: dict[str, Any]) -> ImageData | None:
    """A thought image to show, without metadata (thought images carry no signature, and nothing
    from here is stored); None if it is corrupt (the parse of the whole answer says so)."""
    mime = str(inline.get("mimeType") or inline.get("mime_type") or "image/png")
    try:
        data = pybase64.b64decode(str(inline.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        return None
    return ImageData(data, mime, thought=True)


def read_stream(events: Iterable[SseEvent], answer: StreamedAnswer) -> dict[str, Any]:
    """Feed ``events`` into ``answer`` and return its body; an event that is not JSON is unavailability."""
    for event in events:
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError as exc:
            raise UnavailableError(PROVIDER, "the answer was not valid JSON", status_code=200) from exc
        if not isinstance(chunk, dict):
            raise UnavailableError(PROVIDER, "an event of the stream was not an object", status_code=200)
        answer.add(chunk)
    return answer.body()
