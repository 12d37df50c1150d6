"""Fault injection: make the emulator fail the way the real service does.

A fault is chosen per ``generateContent`` request, after the request passed
authentication and validation (invalid requests always get their 400 and do not
consume a queued fault). Two ways to trigger one:

1. A marker anywhere in the text of the **latest user content**, e.g.
   ``"make it blue [fault:503]"``. Unknown markers are a 400, so typos do not pass
   silently.
2. The fault queue: ``POST /_emulator/faults`` with ``{"faults": ["503", "429"]}``
   queues faults applied to the next requests, one per request, first in first out,
   whatever the prompt. Entries are the marker bodies (``"slow:2"``); a ``fault:``
   prefix and brackets are tolerated. ``DELETE /_emulator/faults`` empties the queue.

The queued fault (if any) comes first, then the prompt's markers. Every ``slow``
fault sleeps; the first other fault decides the answer; with none, the normal
answer is sent.

Triggers (marker in the prompt / queue entry):

- ``[fault:429]`` / ``"429"``: 429 RESOURCE_EXHAUSTED; details are a QuotaFailure
  (per-minute quota, so retryable), a Help link and RetryInfo ``retryDelay: "2s"``.
- ``[fault:500]`` / ``"500"``: 500 INTERNAL.
- ``[fault:503]`` / ``"503"``: 503 UNAVAILABLE "The model is overloaded. Please try again later."
- ``[fault:504]`` / ``"504"``: 504 DEADLINE_EXCEEDED.
- ``[fault:block]`` / ``"block"``: 200 with ``promptFeedback.blockReason: "SAFETY"`` and
  ``safetyRatings``, no ``candidates``.
- ``[fault:image_safety]`` / ``"image_safety"``: 200, one candidate with
  ``finishReason: "IMAGE_SAFETY"`` and no ``content``.
- ``[fault:no_image]`` / ``"no_image"``: 200, ``finishReason: "NO_IMAGE"``, content with
  empty ``parts``.
- ``[fault:text_only]`` / ``"text_only"``: 200, ``finishReason: "STOP"``, only a signed text
  part saying no image was made (a policy refusal looks like this).
- ``[fault:empty]`` / ``"empty"``: 200, ``{"candidates": [{"index": 0}]}`` (no content, no
  finishReason) plus usage metadata.
- ``[fault:slow:N]`` / ``"slow:N"``: sleep N seconds (float) before answering; combine it
  with another fault, or get the normal answer (client timeout tests).
- ``[fault:malformed]`` / ``"malformed"``: 200 with ``Content-Type: application/json`` but a
  truncated, unparsable JSON body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ApiError

SIMPLE_FAULTS: frozenset[str] = frozenset(
    {"429", "500", "503", "504", "block", "image_safety", "no_image", "text_only", "empty", "malformed"}
)
MARKER_RE = re.compile(r"\[fault:([^\]\s]*)\]")
_SLOW_RE = re.compile(r"slow:(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Fault:
    name: str
    seconds: float = 0.0

    @property
    def spec(self) -> str:
        return f"slow:{self.seconds:g}" if self.name == "slow" else self.name


def parse_fault(spec: str) -> Fault:
    """Parse ``"503"``, ``"slow:1.5"``, ``"fault:503"`` or ``"[fault:503]"``; ValueError if unknown."""
    body = spec.strip().removeprefix("[").removesuffix("]").removeprefix("fault:")
    if body in SIMPLE_FAULTS:
        return Fault(body)
    match = _SLOW_RE.fullmatch(body)
    if match:
        return Fault("slow", float(match.group(1)))
    raise ValueError(
        f"Unknown emulator fault {spec!r}; known: {', '.join(sorted(SIMPLE_FAULTS))}, slow:<seconds>"
    )


def markers(text: str) -> list[Fault]:
    """All ``[fault:...]`` markers of a prompt, in order."""
    try:
        return [parse_fault(body) for body in MARKER_RE.findall(text)]
    except ValueError as exc:
        raise ApiError(400, f"Retouch emulator: {exc}", "INVALID_ARGUMENT") from exc


def http_error(fault: Fault, model: str) -> ApiError | None:
    """The error envelope for an HTTP-status fault, or None for a 200-shaped fault."""
    if fault.name == "429":
        return ApiError(
            429,
            "You exceeded your current quota, please check your plan and billing details. For more "
            "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
            "RESOURCE_EXHAUSTED",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                            "quotaDimensions": {"location": "global", "model": model},
                            "quotaValue": "20",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [
                        {
                            "description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                        }
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"},
            ],
        )
    if fault.name == "500":
        return ApiError(
            500,
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
            "INTERNAL",
        )
    if fault.name == "503":
        return ApiError(503, "The model is overloaded. Please try again later.", "UNAVAILABLE")
    if fault.name == "504":
        return ApiError(504, "Deadline expired before operation could complete.", "DEADLINE_EXCEEDED")
    return None
