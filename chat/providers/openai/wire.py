"""Pure translation between the neutral conversation and OpenAI's Images API (edits, generations).

OpenAI's image endpoints keep no conversation: each request is one prompt plus input images.
So instead of replaying history, the fallback reconstructs "what the user is asking now, on which
picture" from it: the prompt is the trailing user text, and the first image is the previous
output (whoever made it), followed by whatever the user attached. No I/O here (the client loads
image bytes), so every rule is tested against literal values.

Rules (openai-images.md):
- A user turn whose answer failed is not lost: its text and attachments merge into the request,
  and the failed assistant turns are skipped, as in the Gemini adapter.
- MARKED images (the region drawn onto the picture) are for Gemini only; OpenAI gets the MASK,
  whose alpha is 0 where the edit goes, applied to the first image.
- Only settings the model accepts are sent; ``response_format`` never (GPT image models always
  answer in base64 and reject it).
- ``n`` images in one answer (variants) share its ``usage``: each reply carries its share, so
  the replies' costs add up to the call's.
"""

from __future__ import annotations

import binascii
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pybase64
from PIL import Image

from chat.domain import (
    ImageData,
    ImagePart,
    ImageRole,
    OpenAIOptions,
    ProviderReply,
    Role,
    Turn,
    Usage,
    mime_for,
    token_count,
)
from chat.errors import (
    AuthError,
    BadRequestError,
    BlockedError,
    InputError,
    NoImageError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    UnavailableError,
)
from chat.media.images import png_bytes
from chat.providers.http import parse_duration
from chat.providers.openai.catalog import OPENAI_BACKGROUNDS, openai_model
from chat.providers.openai.prices import OPENAI_PRICE, PARTIAL_IMAGE_TOKENS

__all__ = [
    "PROVIDER",
    "EditInputs",
    "FormFile",
    "ImageLoader",
    "build_edit_form",
    "build_generation_body",
    "error_from_response",
    "fit_mask",
    "parse_response",
    "parse_responses",
    "select_edit_inputs",
    "usage_from",
]

PROVIDER = "openai"
MAX_IMAGES = 16  # GPT image models take up to 16 input images
MAX_MASK_BYTES = 4 * 1024 * 1024
FALLBACK_PROMPT = "Reproduce this image faithfully."

ImageLoader = Callable[[ImagePart], bytes]
FormFile = tuple[str, tuple[str, bytes, str]]  # httpx ``files=`` item: (field, (filename, bytes, mime))

_COMPRESSIBLE = {"webp", "jpeg"}
_MODERATION_WORDS = re.compile(r"moderation|safety system|content policy", re.IGNORECASE)


# --- history -> what to send ---------------------------------------------------------------


@dataclass(frozen=True)
class EditInputs:
    """One Images API request: ``images`` empty means a generation, else an edit of ``images[0]``."""

    prompt: str
    images: list[ImagePart]
    mask: ImagePart | None


def select_edit_inputs(history: Sequence[Turn]) -> EditInputs:
    """The prompt, input images and mask answering the trailing user turn(s) of ``history``."""
    start = _trailing_start(history)
    earlier, trailing = history[:start], [t for t in history[start:] if t.role is Role.USER]
    prompt = "\n\n".join(text for t in trailing if (text := t.text().strip()))
    if not prompt:
        prompt = next(
            (text for t in reversed(_requests(earlier)) if (text := t.text().strip())), FALLBACK_PROMPT
        )
    attachments = [p for t in trailing for p in t.images() if p.role is ImageRole.INPUT]
    masks = [p for t in trailing for p in t.images() if p.role is ImageRole.MASK]
    previous = _previous_image(earlier)
    images = _unique([previous, *attachments] if previous else attachments)[:MAX_IMAGES]
    return EditInputs(prompt=prompt, images=images, mask=masks[-1] if masks and images else None)


def _requests(turns: Sequence[Turn]) -> list[Turn]:
    """The user's messages a model answered: a quick edit's ("rotate 90° right (local)") is done
    already, so it is never the prompt (its image is the previous one, ``_previous_image``)."""
    return [
        turn
        for n, turn in enumerate(turns)
        if turn.role is Role.USER and not (n + 1 < len(turns) and turns[n + 1].local)
    ]


def _trailing_start(history: Sequence[Turn]) -> int:
    """Index just after the last successful assistant turn (0 if there is none)."""
    for index in range(len(history) - 1, -1, -1):
        turn = history[index]
        if turn.role is Role.ASSISTANT and not turn.failed:
            return index + 1
    return 0


def _previous_image(earlier: Sequence[Turn]) -> ImagePart | None:
    """The newest image before the request: an answer's shown image, or else an uploaded photo."""
    for turn in reversed(earlier):
        if turn.role is Role.ASSISTANT:
            if not turn.failed and (image := turn.shown_image()):
                return image
            continue
        inputs = [p for p in turn.images() if p.role is ImageRole.INPUT]
        if inputs:
            return inputs[-1]
    return None


def _unique(images: list[ImagePart]) -> list[ImagePart]:
    """The same picture twice (a re-upload of the last output) is sent once."""
    unique: dict[str, ImagePart] = {}
    for image in images:
        unique.setdefault(image.sha256, image)
    return list(unique.values())


# --- request -------------------------------------------------------------------------------


def build_edit_form(
    prompt: str,
    images: list[tuple[str, bytes, str]],
    mask: bytes | None,
    options: OpenAIOptions,
    *,
    model: str,
    user: str | None,
    n: int = 1,
    partial_images: int | None = None,
) -> tuple[dict[str, str], list[FormFile]]:
    """Form fields and files for ``POST /images/edits``; ``images`` are (filename, bytes, mime).

    ``partial_images`` asks for a stream of that many drafts before the image (None: no stream).
    """
    data = {"prompt": prompt, "model": model, "n": str(n)}
    data.update({k: str(v) for k, v in _accepted(options, model=model, edit=True).items()})
    if user:
        data["safety_identifier"] = user
    if partial_images is not None:
        data.update(stream="true", partial_images=str(partial_images))
    field = "image" if len(images) == 1 else "image[]"
    files: list[FormFile] = [(field, image) for image in images]
    if mask is not None:
        files.append(("mask", ("mask.png", mask, "image/png")))
    return data, files


def build_generation_body(
    prompt: str,
    options: OpenAIOptions,
    *,
    model: str,
    user: str | None,
    n: int = 1,
    partial_images: int | None = None,
) -> dict[str, Any]:
    """JSON for ``POST /images/generations`` (no input image): same settings, minus input_fidelity."""
    body: dict[str, Any] = {"prompt": prompt, "model": model, "n": n}
    body.update(_accepted(options, model=model, edit=False))
    if user:
        body["safety_identifier"] = user
    if partial_images is not None:
        body.update(stream=True, partial_images=partial_images)
    return body


def _accepted(options: OpenAIOptions, *, model: str, edit: bool) -> dict[str, str | int]:
    """The settings the user set that ``model`` accepts; anything else is silently left out."""
    caps = openai_model(model)
    sent: dict[str, str | int] = {}
    if options.size and caps.accepts_size(options.size):
        sent["size"] = options.size
    if options.quality in caps.qualities:
        sent["quality"] = options.quality
    output_format = options.output_format if options.output_format in caps.output_formats else None
    if options.background in OPENAI_BACKGROUNDS and not (
        options.background == "transparent" and output_format == "jpeg"
    ):
        sent["background"] = options.background
    if output_format:
        sent["output_format"] = output_format
    compression = options.output_compression
    if output_format in _COMPRESSIBLE and compression is not None and 0 <= compression <= 100:
        sent["output_compression"] = compression
    if edit and options.input_fidelity in caps.input_fidelity:
        sent["input_fidelity"] = options.input_fidelity
    return sent


def fit_mask(mask_png: bytes, size: tuple[int, int]) -> bytes:
    """A PNG with alpha, exactly ``size``, under 4 MB: the form OpenAI requires for ``mask``.

    A mask without (any) transparency is read as a painting: lit pixels (luminance > 0) are the
    region to edit, so they become alpha 0 and the rest alpha 255.
    """
    try:
        with Image.open(io.BytesIO(mask_png)) as opened:
            source = opened.copy()
    except (OSError, ValueError) as exc:
        raise InputError("The mask could not be read as an image; paint the region again.") from exc
    rgba = _with_alpha(source)
    if rgba.size != size:
        rgba = rgba.resize(size, Image.Resampling.NEAREST)
    encoded = png_bytes(rgba)
    if len(encoded) >= MAX_MASK_BYTES:
        # Only alpha matters to OpenAI: black pixels and a hard edge compress to almost nothing.
        alpha = rgba.getchannel("A").point(lambda a: 0 if a < 128 else 255)
        rgba = Image.new("RGBA", size, (0, 0, 0, 255))
        rgba.putalpha(alpha)
        encoded = png_bytes(rgba)
    if len(encoded) >= MAX_MASK_BYTES:
        raise InputError("The mask is too large for OpenAI (over 4 MB); use a smaller image.")
    return encoded


def _with_alpha(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        low, _high = rgba.getchannel("A").getextrema()
        if isinstance(low, int) and low < 255:
            return rgba
    painted = image.convert("L")
    alpha = painted.point(lambda v: 0 if v > 0 else 255)
    rgba = Image.new("RGBA", image.size, (0, 0, 0, 255))
    rgba.putalpha(alpha)
    return rgba


# --- response -> reply ---------------------------------------------------------------------


def parse_response(
    body: Mapping[str, Any], *, model: str, output_format: str | None, partial_images: int = 0
) -> ProviderReply:
    """The first base64 image of ``data`` with all of ``usage`` (and so its cost), or the error.

    ``partial_images``: drafts streamed before it, billed on top of the image (prices.py).
    """
    (reply,) = parse_responses(
        body, model=model, output_format=output_format, limit=1, partial_images=partial_images
    )
    return reply


def parse_responses(
    body: Mapping[str, Any],
    *,
    model: str,
    output_format: str | None,
    limit: int,
    partial_images: int = 0,
) -> list[ProviderReply]:
    """The first ``limit`` base64 images of ``data``, one reply each with its share of ``usage``."""
    items = [item for item in body.get("data") or [] if isinstance(item, Mapping)][:limit]
    if not items:
        raise NoImageError(PROVIDER, "the response had no images")
    mime = mime_for(str(body.get("output_format") or output_format or "png"))
    images = [ImageData(_decoded(item.get("b64_json")), mime) for item in items]
    usages = usage_shares(
        body.get("usage"), len(images), extra_image_tokens=partial_images * PARTIAL_IMAGE_TOKENS
    )
    return [
        ProviderReply(provider=PROVIDER, model=model, parts=(image,), finish_reason=None, usage=usage)
        for image, usage in zip(images, usages, strict=True)
    ]


def _decoded(encoded: object) -> bytes:
    if not encoded:
        raise NoImageError(PROVIDER, "the response had no base64 image")
    try:
        # a view of a streamed event's bytes, never copied (chat/providers/openai/stream.py)
        text = encoded if isinstance(encoded, memoryview) else str(encoded)
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UnavailableError(PROVIDER, "the image in the answer was corrupt (bad base64)") from exc


def usage_from(raw: object, *, extra_image_tokens: int = 0) -> Usage:
    """``usage`` as neutral counts, priced: text and image input apart, image output apart."""
    (usage,) = usage_shares(raw, 1, extra_image_tokens=extra_image_tokens)
    return usage


def usage_shares(raw: object, images: int, *, extra_image_tokens: int = 0) -> list[Usage]:
    """``usage`` split over the ``images`` of one answer, each share priced; the counts add up
    exactly (the first images take the remainders). ``extra_image_tokens``: billed output that
    ``usage`` does not count (streamed drafts)."""
    if not isinstance(raw, Mapping):
        raw = {}
    inputs = raw.get("input_tokens_details")
    image_in = token_count(inputs.get("image_tokens")) if isinstance(inputs, Mapping) else 0
    prompt = token_count(raw.get("input_tokens"))
    output = token_count(raw.get("output_tokens"))
    outputs = raw.get("output_tokens_details")
    image_out = token_count(outputs.get("image_tokens")) if isinstance(outputs, Mapping) else output
    text_out = max(output - image_out, 0)
    columns = zip(
        _split(max(prompt - image_in, 0), images),
        _split(image_in, images),
        _split(text_out, images),
        _split(image_out + extra_image_tokens, images),
        strict=True,
    )
    return [
        Usage(
            input_tokens=text_in + img_in,
            output_tokens=txt_out,
            image_tokens=img_out,
            cost_usd=OPENAI_PRICE.cost(text_in=text_in, image_in=img_in, text_out=txt_out, image_out=img_out),
        )
        for text_in, img_in, txt_out, img_out in columns
    ]


def _split(count: int, parts: int) -> list[int]:
    share, rest = divmod(count, parts)
    return [share + (1 if index < rest else 0) for index in range(parts)]


# --- HTTP error -> error type --------------------------------------------------------------


def error_from_response(status: int, body: object, headers: Mapping[str, str]) -> ProviderError:
    """Map an HTTP error and OpenAI's ``{"error": {...}}`` envelope to exactly one error type."""
    error = body.get("error") if isinstance(body, Mapping) else None
    error = error if isinstance(error, Mapping) else {}
    message = str(error.get("message") or f"HTTP {status}")
    code = str(error.get("code") or "")
    kind = str(error.get("type") or "")
    label = code or kind
    detail = f"{status} {label}: {message}" if label else f"{status}: {message}"
    if status == 400 and (
        code == "moderation_blocked"
        or (kind == "image_generation_user_error" and _MODERATION_WORDS.search(message))
    ):
        return BlockedError(PROVIDER, detail, reason="moderation_blocked", status_code=status)
    if status in (401, 403) or (status == 429 and code == "insufficient_quota"):
        return AuthError(PROVIDER, detail, status_code=status)
    if status == 429:
        return RateLimitedError(PROVIDER, detail, status_code=status, retry_after=_retry_after(headers))
    if status in (408, 504):
        return ProviderTimeoutError(PROVIDER, detail, status_code=status)
    if status >= 500:
        return UnavailableError(PROVIDER, detail, status_code=status)
    return BadRequestError(PROVIDER, detail, status_code=status)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms`` first (more precise, as the SDK reads it), then ``retry-after`` seconds."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = parse_duration(lowered.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    return parse_duration(lowered.get("retry-after"))
