"""Fault injection: make the emulator fail the way the real services do.

A fault is chosen per generate/edit request (Gemini ``generateContent``, OpenAI
``images/edits`` and ``images/generations``), after the request passed
authentication and validation (invalid requests always get their 400 and do not
consume a queued fault). Two ways to trigger one:

1. A marker anywhere in the text of the **latest user content** (Gemini) or in the
   ``prompt`` (OpenAI), e.g. ``"make it blue [fault:503]"``. Unknown markers are a 400,
   so typos do not pass silently.
2. The fault queue: ``POST /_emulator/faults`` with ``{"faults": ["503", "429"]}``
   queues faults applied to the next requests, one per request, first in first out,
   whatever the prompt. Entries are the marker bodies (``"slow:2"``); a ``fault:``
   prefix and brackets are tolerated. ``DELETE /_emulator/faults`` empties the queue.

There is ONE queue for both providers. A fault applies to a provider when it is
prefixed with that provider (``gemini:503``, ``openai:503``) or, unprefixed, when the
provider knows it: shared faults (429, 500, 503, 504, empty, malformed, slow) apply to
whichever request comes first, provider-specific ones (``block`` ... for Gemini,
``moderation``, ``truncated_b64`` for OpenAI) only to their provider. A request takes
the first queued fault that applies to it; faults for the other provider stay queued
in order. Markers follow the same rule: ``[fault:gemini:503]`` fails only Gemini and
is ignored by OpenAI, so one prompt can make the primary fail and the fallback work.
A prefix with a fault the provider does not have (``openai:block``) is a 400.

The queued fault (if any) comes first, then the prompt's markers. Every ``slow``
fault sleeps; the first other fault decides the answer; with none, the normal
answer is sent.

Shared triggers (marker in the prompt / queue entry), shown for each provider:

- ``[fault:429]`` / ``"429"``: Gemini 429 RESOURCE_EXHAUSTED; details are a QuotaFailure
  (per-minute quota, so retryable), a Help link and RetryInfo ``retryDelay: "2s"``.
  OpenAI 429 ``rate_limit_exceeded`` (type ``requests``) with ``retry-after: 2``.
- ``[fault:500]`` / ``"500"``: Gemini 500 INTERNAL; OpenAI 500 ``server_error``.
- ``[fault:503]`` / ``"503"``: Gemini 503 UNAVAILABLE "The model is overloaded. Please try
  again later."; OpenAI 503 ``server_error``.
- ``[fault:504]`` / ``"504"``: Gemini 504 DEADLINE_EXCEEDED; OpenAI 504 ``server_error``.
- ``[fault:empty]`` / ``"empty"``: Gemini 200 ``{"candidates": [{"index": 0}]}`` (no content,
  no finishReason) plus usage metadata; OpenAI 200 with ``"data": []``.
- ``[fault:slow:N]`` / ``"slow:N"``: sleep N seconds (float) before answering; combine it
  with another fault, or get the normal answer (client timeout tests).
- ``[fault:malformed]`` / ``"malformed"``: 200 with ``Content-Type: application/json`` but a
  truncated, unparsable JSON body.

Gemini only:

- ``[fault:block]`` / ``"block"``: 200 with ``promptFeedback.blockReason: "SAFETY"`` and
  ``safetyRatings``, no ``candidates``.
- ``[fault:image_safety]`` / ``"image_safety"``: 200, one candidate with
  ``finishReason: "IMAGE_SAFETY"`` and no ``content``.
- ``[fault:no_image]`` / ``"no_image"``: 200, ``finishReason: "NO_IMAGE"``, content with
  empty ``parts``.
- ``[fault:text_only]`` / ``"text_only"``: 200, ``finishReason: "STOP"``, only a signed text
  part saying no image was made (a policy refusal looks like this).
- ``[fault:stream_cut]`` / ``"stream_cut"``: a streamed answer (``streamGenerateContent``) drops
  its connection after the first thought image (or half its chunks), without ending the chunked
  body; ``generateContent`` answers the ``malformed`` body (an answer cut off).
- ``[fault:stream_error]`` / ``"stream_error"``: a streamed answer sends a 503 ``{"error": ...}``
  event at that point and ends, its status a 200 already; ``generateContent`` answers the 503.
- ``[fault:drip:N]`` / ``"drip:N"``: a streamed answer waits N seconds (float) between its chunks
  (``create_app(chunk_delay_ms=...)`` does it for every one); like ``slow``, combine it with
  another fault or get the normal answer. ``generateContent`` ignores it.

OpenAI only (see :mod:`.openai_errors` and :mod:`.openai_routes`):

- ``[fault:moderation]`` / ``"moderation"``: 400 ``moderation_blocked`` (type
  ``image_generation_user_error``, param null), "Your request was rejected as a result of
  our safety system. ...".
- ``[fault:truncated_b64]`` / ``"truncated_b64"``: 200, the normal body, but each
  ``b64_json`` is valid base64 of only the first half of the image file (a corrupt PNG).
- ``[fault:stream_cut]`` / ``"stream_cut"``: a streamed answer ends after its first event (the
  first draft; nothing at all without drafts), with no ``completed``; a plain answer is cut
  halfway as ``malformed`` is.
- ``[fault:stream_error]`` / ``"stream_error"``: a streamed answer sends an ``error`` event
  (``{"type": "error", "error": {... "type": "server_error"}}``) after its first draft
  (at once without drafts); a plain answer is the ``500``.

The 200-shaped faults keep their meaning in a stream: ``empty`` completes with an empty
``b64_json``, ``malformed`` with a cut-off JSON event, ``truncated_b64`` with half the file.

Any of these takes a provider prefix: ``[fault:openai:429]``, ``"gemini:slow:1"``.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from .errors import ApiError

PROVIDERS: tuple[str, ...] = ("gemini", "openai")
SHARED_FAULTS: frozenset[str] = frozenset({"429", "500", "503", "504", "empty", "malformed"})
#: Faults that only one provider can produce (plus the shared ones and ``slow``).
PROVIDER_FAULTS: dict[str, frozenset[str]] = {
    "gemini": SHARED_FAULTS
    | {"block", "image_safety", "no_image", "text_only", "stream_cut", "stream_error"},
    "openai": SHARED_FAULTS | {"moderation", "truncated_b64", "stream_cut", "stream_error"},
}
SIMPLE_FAULTS: frozenset[str] = frozenset().union(*PROVIDER_FAULTS.values())
MARKER_RE = re.compile(r"\[fault:([^\]\s]*)\]")
_SLOW_RE = re.compile(r"(slow|drip):(\d+(?:\.\d+)?)")
#: Faults that only wait (``slow`` before the answer, ``drip`` between a stream's chunks).
TIMED: dict[str, frozenset[str]] = {"slow": frozenset(PROVIDERS), "drip": frozenset({"gemini"})}


@dataclass(frozen=True)
class Fault:
    name: str
    seconds: float = 0.0
    #: Set when the trigger was prefixed (``openai:503``): only that provider's requests take it.
    provider: str | None = None

    @property
    def spec(self) -> str:
        body = f"{self.name}:{self.seconds:g}" if self.name in TIMED else self.name
        return f"{self.provider}:{body}" if self.provider else body

    def applies_to(self, provider: str) -> bool:
        if self.provider is not None:
            return self.provider == provider
        return provider in TIMED.get(self.name, ()) or self.name in PROVIDER_FAULTS[provider]


def _unknown(spec: str) -> ValueError:
    return ValueError(
        f"Unknown emulator fault {spec!r}; known: {', '.join(sorted(SIMPLE_FAULTS))}, slow:<seconds>, "
        "drip:<seconds>, "
        f"optionally prefixed with {' or '.join(p + ':' for p in PROVIDERS)}"
    )


def parse_fault(spec: str) -> Fault:
    """Parse ``"503"``, ``"slow:1.5"``, ``"openai:503"``, ``"fault:503"`` or ``"[fault:503]"``; ValueError if unknown."""
    body = spec.strip().removeprefix("[").removesuffix("]").removeprefix("fault:")
    provider, _, rest = body.partition(":")
    if provider in PROVIDERS and rest:
        inner = parse_fault(rest)
        if inner.provider is not None or not inner.applies_to(provider):
            raise ValueError(f"Emulator fault {inner.spec!r} does not exist for {provider} (in {spec!r})")
        return Fault(inner.name, inner.seconds, provider)
    if body in SIMPLE_FAULTS:
        return Fault(body)
    match = _SLOW_RE.fullmatch(body)
    if match:
        return Fault(match.group(1), float(match.group(2)))
    raise _unknown(spec)


def parse_markers(text: str, provider: str) -> list[Fault]:
    """The ``[fault:...]`` markers of a prompt that apply to ``provider``, in order (ValueError if any is unknown)."""
    return [f for f in (parse_fault(body) for body in MARKER_RE.findall(text)) if f.applies_to(provider)]


def markers(text: str, provider: str = "gemini") -> list[Fault]:
    """:func:`parse_markers` with unknown markers reported as a Google 400."""
    try:
        return parse_markers(text, provider)
    except ValueError as exc:
        raise ApiError(400, f"Retouch emulator: {exc}", "INVALID_ARGUMENT") from exc


def take_queued(queue: deque[Fault], provider: str) -> Fault | None:
    """Remove and return the oldest queued fault for ``provider``; the others keep their order."""
    for index, fault in enumerate(queue):
        if fault.applies_to(provider):
            del queue[index]
            return fault
    return None


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
