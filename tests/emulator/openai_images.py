"""Building OpenAI ``ImagesResponse`` bodies: deterministic images, provenance, usage.

Everything is a pure function of the validated request, so the same request gets
byte-identical images. Edits start from the FIRST input image fitted to the output
size (requested ``size``, else the input's own size with the long side capped at
2048) and apply the Gemini side's edit (:func:`.images.apply_edit`: a tint from the
prompt's SHA-256 and a band). The band moves with the output's index, so the ``n``
images of one answer differ. With a mask, only pixels whose mask alpha is 0 take
the edit; all others keep the (fitted) input's exact values, so with PNG or
lossless WebP output and no resize a test can check mask semantics pixel by pixel.
Generations start from a prompt-coloured gradient (1024x1024 unless ``size`` says).

``background: transparent`` gives an RGBA image: the source's alpha is kept, and a
transparent frame (1/32 of the short side) is cut into the editable area.

Provenance (``images.read_provenance``; PNG ``tEXt``, JPEG comment, WebP XMP)::

    {"provider": "openai", "endpoint": "edits" | "generations", "model", "prompt" (first
     4000 characters), "input_sha256": [sha256 of each image as uploaded, in order],
     "mask_sha256": str | null, "size": "WxH", "index": position in data}

``created`` is a constant (2026-11-01T00:00:00Z); token counts: :mod:`.openai_models`.

A streamed answer (``stream=true``) is ``partial_images`` drafts, then the image itself, each
as the event the real API sends (:func:`partial_event`, :func:`completed_event`). Draft ``i``
of ``K`` is the final image shrunk by ``2 ** (K + 1 - i)`` and scaled back up: decodable, of
the final size and format, and closer to the image with each index (its provenance adds
``"partial_image_index"``). The completed event's ``usage`` is the plain answer's: the
drafts' tokens are billed on top (the guide's "Partial images cost").
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from PIL import Image, ImageDraw, ImageOps

from . import images
from .openai_models import input_image_tokens, output_image_tokens
from .openai_request import ImageRequest

CREATED = 1_793_491_200
MIME_BY_FORMAT: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def output_size(req: ImageRequest) -> tuple[int, int]:
    if req.size is not None:
        return req.size
    if req.images:
        return images.target_size(None, None, req.images[0].image.size)
    return (1024, 1024)


def _fit(image: Image.Image, size: tuple[int, int], mode: str) -> Image.Image:
    converted = image.convert(mode)
    if converted.size == size:
        return converted
    return ImageOps.fit(converted, size, Image.Resampling.BILINEAR)


def _editable(req: ImageRequest, size: tuple[int, int]) -> Image.Image | None:
    """An ``L`` image, 255 where the mask's alpha is 0 (fitted like the image), or None without a mask."""
    if req.mask is None:
        return None
    alpha = req.mask.image.convert("RGBA").getchannel("A")
    if alpha.size != size:
        alpha = ImageOps.fit(alpha, size, Image.Resampling.NEAREST)
    return alpha.point(lambda value: 255 if value == 0 else 0)


def _render(req: ImageRequest, base: Image.Image, editable: Image.Image | None, index: int) -> Image.Image:
    edited = images.apply_edit(base.convert("RGB"), req.prompt, index + 1)
    if req.background == "transparent":
        alpha = base.getchannel("A")
        width, height = alpha.size
        frame = max(1, min(width, height) // 32)
        ImageDraw.Draw(alpha).rectangle((0, 0, width - 1, height - 1), outline=0, width=frame)
        edited.putalpha(alpha)
    if editable is not None:
        edited = Image.composite(edited, base, editable)
    return edited


def provenance(req: ImageRequest, size: tuple[int, int], index: int) -> dict[str, Any]:
    return {
        "provider": "openai",
        "endpoint": req.endpoint,
        "model": req.model.id,
        "prompt": req.prompt[: images.MAX_PROVENANCE_PROMPT],
        "input_sha256": [d.upload.sha256 for d in req.images],
        "mask_sha256": req.mask.upload.sha256 if req.mask else None,
        "size": f"{size[0]}x{size[1]}",
        "index": index,
    }


def _pictures(req: ImageRequest) -> list[Image.Image]:
    size = output_size(req)
    mode = "RGBA" if req.background == "transparent" else "RGB"
    if req.images:
        base = _fit(req.images[0].image, size, mode)
    else:
        base = images.base_image(None, req.prompt, size).convert(mode)
    editable = _editable(req, size)
    return [_render(req, base, editable, i) for i in range(req.n)]


def _encode(req: ImageRequest, picture: Image.Image, origin: dict[str, Any]) -> bytes:
    return images.encode(picture, MIME_BY_FORMAT[req.output_format], origin, req.output_compression)


def render(req: ImageRequest) -> list[bytes]:
    """The ``n`` encoded output images."""
    size = output_size(req)
    return [_encode(req, picture, provenance(req, size, i)) for i, picture in enumerate(_pictures(req))]


def render_stream(req: ImageRequest) -> tuple[list[bytes], bytes]:
    """The ``partial_images`` encoded drafts (coarsest first) and the final image of a streamed answer."""
    (final,) = _pictures(req)
    size = output_size(req)
    drafts = []
    for index in range(req.partial_images):
        factor = 2 ** (req.partial_images + 1 - index)
        small = final.resize(
            (max(1, size[0] // factor), max(1, size[1] // factor)), Image.Resampling.BILINEAR
        )
        draft = small.resize(size, Image.Resampling.BILINEAR)
        drafts.append(_encode(req, draft, {**provenance(req, size, 0), "partial_image_index": index}))
    return drafts, _encode(req, final, provenance(req, size, 0))


def _event_fields(req: ImageRequest, kind: str, b64_json: str) -> dict[str, Any]:
    width, height = output_size(req)
    prefix = "image_edit" if req.endpoint == "edits" else "image_generation"
    return {
        "type": f"{prefix}.{kind}",
        "b64_json": b64_json,
        "created_at": CREATED,
        "size": f"{width}x{height}",
        "quality": req.quality,
        "background": req.background,
        "output_format": req.output_format,
    }


def partial_event(req: ImageRequest, data: bytes, index: int) -> dict[str, Any]:
    return {
        **_event_fields(req, "partial_image", base64.b64encode(data).decode()),
        "partial_image_index": index,
    }


def completed_event(req: ImageRequest, data: bytes, *, truncate: bool = False) -> dict[str, Any]:
    """The last event; ``truncate`` encodes only the first half of the file, as in :func:`body`."""
    encoded = base64.b64encode(data[: len(data) // 2] if truncate else data).decode() if data else ""
    return {**_event_fields(req, "completed", encoded), "usage": usage(req, 1)}


def usage(req: ImageRequest, images_out: int) -> dict[str, Any]:
    text = max(1, math.ceil(len(req.prompt) / 4))
    image_in = sum(input_image_tokens(d.image.size) for d in req.images)
    image_out = output_image_tokens(req.quality, output_size(req)) * images_out
    return {
        "input_tokens": text + image_in,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image_in},
        "output_tokens": image_out,
        "output_tokens_details": {"image_tokens": image_out, "text_tokens": 0},
        "total_tokens": text + image_in + image_out,
    }


def body(req: ImageRequest, outputs: list[bytes], *, truncate: bool = False) -> dict[str, Any]:
    """The ``ImagesResponse``; ``truncate`` encodes only the first half of each file (a corrupt image)."""
    width, height = output_size(req)
    return {
        "created": CREATED,
        "background": req.background,
        "data": [
            {"b64_json": base64.b64encode(data[: len(data) // 2] if truncate else data).decode()}
            for data in outputs
        ],
        "output_format": req.output_format,
        "quality": req.quality,
        "size": f"{width}x{height}",
        "usage": usage(req, len(outputs)),
    }


def success(req: ImageRequest) -> dict[str, Any]:
    return body(req, render(req))


def malformed(req: ImageRequest) -> bytes:
    """A plausible answer cut off mid-way: valid-looking start, unparsable as a whole."""
    text = json.dumps(success(req)).encode()
    return text[: max(16, len(text) // 2)]
