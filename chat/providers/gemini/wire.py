"""Pure translation between the neutral conversation and Gemini's ``generateContent`` JSON.

No I/O here (image bytes come through a loader), so every rule is tested against literal JSON.

Replay rules (gemini-api.md §4-§5, §12; README "Streaming and replay"):
- Gemini's own model turns are replayed as received: same parts, same order, their ``thought``
  flag (the part's field) and ``thoughtSignature`` (verbatim from ``provider_metadata["gemini"]``)
  echoed. Dropping a signature is a 400 on Gemini 3 image models. Only allow-listed keys are
  echoed (``KNOWN_METADATA``), so no stored or imported key can replace the part's own data.
- Except unsigned thought parts (thought summaries, Pro's interim images): they are kept for
  display but not replayed. The model's reasoning state travels in the signatures, which sit on
  the non-thought parts; the API checks those and never a thought part, and the interim images
  are MBs of base64 per turn. A thought part that does carry a signature is replayed, and so is
  a turn whose parts are all thoughts (an answer whose only image came flagged as a thought).
- A user turn whose answer failed is not dropped on its own (it may carry the uploaded
  photo): consecutive unanswered user turns are merged into the next user content, and the
  failed assistant turns themselves are never sent (the SDK's "curated history").
- Signatures are bound to the model that issued them. An answer from another model (the
  user switched models) or another provider is replayed as user context: a short note and
  its image, merged into the next user content.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pybase64

from chat.domain import (
    GenerationOptions,
    ImageData,
    ImagePart,
    ImageRole,
    Part,
    ProviderReply,
    ReplyPart,
    Role,
    TextPart,
    Turn,
    Usage,
    known_metadata,
    latest_answers,
    token_count,
)
from chat.errors import (
    AuthError,
    BadRequestError,
    BlockedError,
    NoImageError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    UnavailableError,
)
from chat.providers.context import split_history
from chat.providers.encoded_images import EncodedImages
from chat.providers.gemini.catalog import SAFETY_CATEGORIES, gemini_model
from chat.providers.gemini.prices import gemini_price
from chat.providers.http import parse_duration

__all__ = [
    "PROVIDER",
    "build_contents",
    "build_request",
    "error_from_response",
    "parse_response",
]

PROVIDER = "gemini"
MARKED_NOTE = (
    "Change only the area tinted magenta in the next image (the tint marks the region, it is not "
    "part of the picture); keep everything outside it exactly as it is."
)
ImageLoader = Callable[[ImagePart], bytes]
ImageEncoder = Callable[[ImagePart], str]  # the image's base64 text

_DATA_KEYS = {"text", "inlineData", "inline_data"}
_BLOCKING_FINISH = {
    "SAFETY",
    "IMAGE_SAFETY",
    "PROHIBITED_CONTENT",
    "IMAGE_PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_RECITATION",
}


# --- history -> contents -------------------------------------------------------------------


def build_contents(
    turns: Sequence[Turn],
    load_image: ImageLoader,
    *,
    model: str,
    keep_images: int | None = None,
    encoded: EncodedImages | None = None,
) -> list[dict[str, Any]]:
    """The ``contents`` array for answering the trailing user turn(s) of ``turns`` with ``model``.

    ``keep_images`` bounds the images replayed (see chat/providers/context.py); older turns go as text.
    ``encoded`` keeps the base64 text of images between calls.
    """

    def encode(part: ImagePart) -> str:
        if encoded is None:
            return pybase64.b64encode_as_string(load_image(part))
        return encoded.text(part, load_image)

    older, recent = split_history(latest_answers(turns), keep_images)
    contents: list[dict[str, Any]] = []
    waiting: list[dict[str, Any]] = _as_text(older)
    for turn in recent:
        if turn.role is Role.USER:
            waiting += [part for p in turn.parts for part in _user_parts(p, encode)]
        elif turn.failed or not waiting:
            continue
        elif _replayable(turn, model):
            contents.append({"role": "user", "parts": waiting})
            contents.append({"role": "model", "parts": [_model_part(p, encode) for p in _replayed(turn)]})
            waiting = []
        else:
            waiting += _foreign_answer(turn, encode)
    if waiting:
        contents.append({"role": "user", "parts": waiting})
    return contents


def _as_text(turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """Older history as plain user-side text: what was asked and answered, images omitted."""
    lines = []
    for turn in turns:
        images = len([p for p in turn.images() if p.role is not ImageRole.MASK and not p.thought])
        omitted = f" [{images} image{'s' if images != 1 else ''} omitted]" if images else ""
        if turn.role is Role.USER:
            lines.append(f"User: {turn.text()}{omitted}")
        elif turn.local:
            lines.append(f"The user edited the image themselves ({turn.model}){omitted}")
        elif not turn.failed:
            lines.append(f"You answered: {turn.text() or '(an image)'}{omitted}")
    if not lines:
        return []
    return [{"text": "(Earlier in this conversation, summarised without its images:)\n" + "\n".join(lines)}]


def _user_parts(part: Part, encode: ImageEncoder) -> list[dict[str, Any]]:
    """Masks are for OpenAI; Gemini gets the painted region as a marked copy plus an instruction."""
    if isinstance(part, ImagePart) and part.role is ImageRole.MASK:
        return []
    if isinstance(part, ImagePart) and part.role is ImageRole.MARKED:
        return [{"text": MARKED_NOTE}, _user_part(part, encode)]
    return [_user_part(part, encode)]


def _replayable(turn: Turn, model: str) -> bool:
    """Signatures are bound to the model that issued them: only that model's turns replay as-is."""
    return turn.provider == PROVIDER and (turn.options.get("model") or turn.model) == model


def _replayed(turn: Turn) -> Sequence[Part]:
    """The parts of a replayable turn that go back: all but its unsigned thoughts (see the module)."""
    kept = [p for p in turn.parts if not p.thought or known_metadata(p.provider_metadata).get(PROVIDER)]
    return kept if any(not p.thought for p in kept) else turn.parts


def _foreign_answer(turn: Turn, encode: ImageEncoder) -> list[dict[str, Any]]:
    """An answer from another model (or provider) re-enters as user context: its text and image.

    A model part without a valid signature is a 400 on Gemini 3 image models, so the
    earlier result is shown to the model as a reference image the user supplies. A quick edit's
    is one: the user made it here, without a model, and the note says so (so it is not done again).
    """
    image = turn.shown_image()
    if image is None:
        return []
    if turn.local:
        note = (
            f"(The current image, which the user edited themselves: {turn.model}. Do not repeat that edit.)"
        )
    else:
        note = f"(The current image, made earlier by {turn.model or turn.provider}.)"
    return [{"text": note}, {"inlineData": _inline(image, encode)}]


def _user_part(part: Part, encode: ImageEncoder) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"text": part.text}
    return {"inlineData": _inline(part, encode)}


def _model_part(part: Part, encode: ImageEncoder) -> dict[str, Any]:
    """The part as Gemini sent it: its own data, its thought flag and its signature.

    The allow-list names no data field, so whatever a row stores (an imported ``inlineData``
    included) cannot replace the part's own data; the keys come in the order Gemini sends them
    (data, ``thought``, ``thoughtSignature``), so the response cache's request bodies keep their hashes.
    """
    echoed = {"thought": True} if part.thought else {}
    echoed |= known_metadata(part.provider_metadata).get(PROVIDER, {})
    if isinstance(part, TextPart):
        return {"text": part.text, **echoed}
    return {"inlineData": _inline(part, encode), **echoed}


def _inline(part: ImagePart, encode: ImageEncoder) -> dict[str, str]:
    return {"mimeType": part.mime_type, "data": encode(part)}


# --- options -> request body ---------------------------------------------------------------


def build_request(
    contents: list[dict[str, Any]], options: GenerationOptions, *, include_thoughts: bool = False
) -> dict[str, Any]:
    """The request body; only settings the user set, and image settings the model supports.

    ``include_thoughts`` asks for the thought summaries (and Pro's interim images), which a
    streamed call shows while the answer is made.
    """
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    sampling = {
        "temperature": options.temperature,
        "topP": options.top_p,
        "topK": options.top_k,
        "maxOutputTokens": options.max_output_tokens,
        "seed": options.seed,
    }
    config.update({k: v for k, v in sampling.items() if v is not None})
    if options.stop_sequences:
        config["stopSequences"] = list(options.stop_sequences)
    if include_thoughts:
        config["thinkingConfig"] = {"includeThoughts": True}
    image_config = _image_config(options)
    if image_config:
        config["imageConfig"] = image_config
    body: dict[str, Any] = {"contents": contents, "generationConfig": config}
    if options.safety_threshold:
        body["safetySettings"] = [
            {"category": category, "threshold": options.safety_threshold} for category in SAFETY_CATEGORIES
        ]
    return body


def _image_config(options: GenerationOptions) -> dict[str, str]:
    model = gemini_model(options.model)
    config = {}
    if options.aspect_ratio and options.aspect_ratio in model.aspect_ratios:
        config["aspectRatio"] = options.aspect_ratio
    if options.image_size and options.image_size in model.image_sizes:
        config["imageSize"] = options.image_size
    return config


# --- response -> reply ---------------------------------------------------------------------


def parse_response(
    body: Mapping[str, Any], *, model: str, encoded: EncodedImages | None = None
) -> ProviderReply:
    """A successful reply with an image, or the error saying why there is none.

    ``encoded`` keeps each answer image's base64 text as it came, for the next request to replay.
    """
    candidates = body.get("candidates") or []
    feedback = body.get("promptFeedback") or {}
    if not candidates:
        if reason := feedback.get("blockReason"):
            raise BlockedError(PROVIDER, f"prompt blocked: {reason}", reason=reason)
        raise NoImageError(PROVIDER, "the response had no candidates")
    candidate = candidates[0]
    finish = candidate.get("finishReason")
    if finish in _BLOCKING_FINISH:
        raise BlockedError(PROVIDER, f"finish reason {finish}", reason=finish)
    if finish == "MISSING_THOUGHT_SIGNATURE":
        raise BadRequestError(PROVIDER, "the replayed history lost a thought signature")
    raw_parts = (candidate.get("content") or {}).get("parts") or []
    reply = ProviderReply(
        provider=PROVIDER,
        model=body.get("modelVersion") or model,
        parts=tuple(_reply_part(p, encoded) for p in raw_parts),
        finish_reason=finish,
        usage=usage_from(body.get("usageMetadata"), model=body.get("modelVersion") or model),
        response_id=body.get("responseId"),
    )
    if not reply.parts:
        raise NoImageError(PROVIDER, f"empty answer (finish reason {finish or 'none'})")
    if reply.final_image() is None:
        raise NoImageError(PROVIDER, f"text only (finish reason {finish or 'none'})", reply=reply)
    return reply


def usage_from(raw: object, *, model: str) -> Usage:
    """``usageMetadata`` as neutral counts, priced: image output apart, thinking billed as text output."""
    if not isinstance(raw, Mapping):
        return Usage()
    details = raw.get("candidatesTokensDetails")
    image = sum(
        token_count(d.get("tokenCount"))
        for d in (details if isinstance(details, list) else [])
        if isinstance(d, Mapping) and d.get("modality") == "IMAGE"
    )
    prompt = token_count(raw.get("promptTokenCount"))
    text = max(token_count(raw.get("candidatesTokenCount")) - image, 0)
    thoughts = token_count(raw.get("thoughtsTokenCount"))
    cost = gemini_price(model).cost(text_in=prompt, text_out=text + thoughts, image_out=image)
    return Usage(
        input_tokens=prompt, output_tokens=text, image_tokens=image, thought_tokens=thoughts, cost_usd=cost
    )


def _reply_part(raw: Mapping[str, Any], encoded: EncodedImages | None) -> ReplyPart:
    """One answer part: its data, its thought flag, and what Gemini must get back (``KNOWN_METADATA``)."""
    thought = raw.get("thought") is True
    echoed = known_metadata({PROVIDER: {k: v for k, v in raw.items() if k not in _DATA_KEYS}})
    inline = raw.get("inlineData") or raw.get("inline_data")
    if inline is None:
        if "text" not in raw:
            raise UnavailableError(PROVIDER, f"unexpected part in the answer: {sorted(raw)}")
        return TextPart(raw["text"], thought=thought, provider_metadata=echoed)
    mime = inline.get("mimeType") or inline.get("mime_type") or "image/png"
    text = str(inline.get("data", ""))
    try:
        data, standard = _decode_base64(text)
    except (binascii.Error, ValueError) as exc:
        raise UnavailableError(PROVIDER, "the image in the answer was corrupt (bad base64)") from exc
    image = ImageData(data, mime, thought=thought, provider_metadata=echoed)
    if standard and encoded is not None:
        encoded.keep(image.sha256, text)
    return image


def _decode_base64(text: str) -> tuple[bytes, bool]:
    """The bytes, and whether ``text`` was standard base64 (as Gemini sends it, and as a request
    carries it), which takes the fast path (pybase64: ~0.2 ms for a 1K PNG, ~8 in binascii).

    Protobuf JSON also allows the URL-safe alphabet and missing padding: those take the slow path.
    """
    try:
        return pybase64.b64decode(text, validate=True), True
    except binascii.Error:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True), False


# --- HTTP error -> error type --------------------------------------------------------------


def error_from_response(status: int, body: object) -> ProviderError:
    """Map an HTTP error and Google's error envelope to exactly one error type."""
    error = _error_object(body)
    message = str(error.get("message") or f"HTTP {status}")
    rpc_status = str(error.get("status") or "")
    details = error.get("details") or []
    reasons = {d.get("reason") for d in details if isinstance(d, dict)}
    detail = f"{status} {rpc_status}: {message}" if rpc_status else f"{status}: {message}"
    if status in (401, 403) or "API_KEY_INVALID" in reasons or status == 402:
        return AuthError(PROVIDER, detail, status_code=status)
    if status == 429:
        delays = [
            parse_duration(d.get("retryDelay")) for d in details if isinstance(d, dict) and "retryDelay" in d
        ]
        return RateLimitedError(
            PROVIDER, detail, status_code=status, retry_after=next(filter(None, delays), None)
        )
    if status in (408, 504):
        return ProviderTimeoutError(PROVIDER, detail, status_code=status)
    if status >= 500:
        return UnavailableError(PROVIDER, detail, status_code=status)
    return BadRequestError(PROVIDER, detail, status_code=status)


def _error_object(body: object) -> Mapping[str, Any]:
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}
