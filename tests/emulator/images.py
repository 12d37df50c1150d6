"""Deterministic "edits" and provenance.

The emulator does not understand prompts; it only has to produce an image that a
test can tell apart and trace back. The output is the last input image (or a
gradient when there is none), tinted and striped with colours derived from the
SHA-256 of the latest user text, so the same request always yields identical bytes
and a different prompt yields different pixels. Provenance JSON is embedded in the
file (PNG ``tEXt`` chunk ``retouch-emulator`` / JPEG comment / WebP XMP packet, as the
text of a ``retouch:provenance`` element) so tests can see which prompt, model and
input images produced a stored image. The OpenAI side (:mod:`.openai_images`) uses
the same helpers.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import re
from typing import Any
from xml.sax.saxutils import escape, unescape

from PIL import Image, ImageDraw, ImageOps, PngImagePlugin

from .models import TIER_SIDE

PROVENANCE_KEY = "retouch-emulator"
DECODABLE_MIME: frozenset[str] = frozenset({"image/png", "image/jpeg", "image/webp"})
INPUT_MIME: frozenset[str] = DECODABLE_MIME | {"image/heic", "image/heif"}
MAX_KEPT_SIDE = 2048
#: A JPEG comment segment holds at most 65533 bytes; 4000 escaped characters fit easily.
_MAX_COMMENT = 65_000
MAX_PROVENANCE_PROMPT = 4000
_XMP_NS = "https://retouch.invalid/ns/emulator/1.0/"
_XMP_RE = re.compile(r"<retouch:provenance>(.*?)</retouch:provenance>", re.DOTALL)


@functools.lru_cache(maxsize=32)
def decode(data: bytes, mime: str) -> Image.Image | None:
    """Fully decode an input image; ``None`` if it is not a valid image.

    HEIC/HEIF cannot be decoded by Pillow here, so only their container header is
    checked and they are never used as the base of an edit.

    Cached: a replayed image is usually one this emulator answered with, and decoding a 1K
    photo again costs ~33 ms of the CPUs the app under test shares (bench/capacity.py). The
    image is shared, so callers never change it (``base_image`` converts it into a copy).
    """
    if mime not in DECODABLE_MIME:
        return None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception:  # Pillow raises many unrelated types for bad data.
        return None
    return image


def is_valid_input(data: bytes, mime: str) -> bool:
    if mime in DECODABLE_MIME:
        return decode(data, mime) is not None
    return len(data) > 12 and data[4:8] == b"ftyp"


def _round16(value: float) -> int:
    return max(16, int(round(value / 16)) * 16)


def target_size(
    aspect_ratio: str | None, image_size: str | None, base: tuple[int, int] | None
) -> tuple[int, int]:
    """Output size: a tier's pixel count at the requested ratio, else the input's size.

    ``1:1`` at 1K is exactly 1024x1024; other ratios keep about the same pixel count,
    rounded to multiples of 16 (the real tables differ by a few pixels, reference §2).
    """
    if aspect_ratio is None and image_size is None:
        if base is None:
            return (1024, 1024)
        width, height = base
        scale = min(1.0, MAX_KEPT_SIDE / max(width, height))
        return (max(1, round(width * scale)), max(1, round(height * scale)))
    side = TIER_SIDE[image_size or "1K"]
    if aspect_ratio is not None:
        ratio_w, ratio_h = (int(x) for x in aspect_ratio.split(":"))
    elif base is not None:
        ratio_w, ratio_h = base
    else:
        ratio_w, ratio_h = 1, 1
    area = side * side
    return (_round16(math.sqrt(area * ratio_w / ratio_h)), _round16(math.sqrt(area * ratio_h / ratio_w)))


def _gradient(size: tuple[int, int], seed: bytes) -> Image.Image:
    mask = Image.linear_gradient("L").rotate(seed[6] % 4 * 90).resize(size, Image.Resampling.BILINEAR)
    start = Image.new("RGB", size, tuple(seed[0:3]))
    end = Image.new("RGB", size, tuple(seed[3:6]))
    return Image.composite(start, end, mask)


def base_image(source: Image.Image | None, prompt: str, size: tuple[int, int]) -> Image.Image:
    """The picture before the edit: the source fitted to ``size``, or a prompt-coloured gradient."""
    if source is None:
        return _gradient(size, hashlib.sha256(b"base|" + prompt.encode()).digest())
    rgb = source.convert("RGB")
    if rgb.size == size:
        return rgb
    return ImageOps.fit(rgb, size, Image.Resampling.BILINEAR)


def apply_edit(base: Image.Image, prompt: str, n_contents: int) -> Image.Image:
    """Blend a prompt-derived tint (25-35 %) and draw a band whose position follows the turn count."""
    digest = hashlib.sha256(prompt.encode()).digest()
    alpha = 0.25 + digest[3] / 255 * 0.10
    edited = Image.blend(base, Image.new("RGB", base.size, tuple(digest[0:3])), alpha)
    width, height = edited.size
    thickness = max(2, height // 48)
    top = (n_contents * 7 + digest[4]) % 100 * max(1, height - thickness) // 100
    ImageDraw.Draw(edited).rectangle((0, top, width, top + thickness - 1), fill=tuple(digest[5:8]))
    return edited


def _xmp(text: str) -> bytes:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:retouch="{_XMP_NS}"><retouch:provenance>{escape(text)}'
        "</retouch:provenance></rdf:Description></rdf:RDF></x:xmpmeta>"
    ).encode()


def encode(
    image: Image.Image, mime: str, provenance: dict[str, Any] | None = None, quality: int | None = None
) -> bytes:
    """PNG (fast compression), JPEG or WebP, with the provenance JSON embedded when given.

    ``quality`` (1-100) applies to JPEG (default 90) and WebP (default and 100: lossless).
    """
    text = json.dumps(provenance, ensure_ascii=True, sort_keys=True) if provenance is not None else None
    buffer = io.BytesIO()
    extra: dict[str, Any] = {}
    if mime == "image/jpeg":
        if text is not None:
            extra["comment"] = text.encode()[:_MAX_COMMENT]
        image.save(buffer, "JPEG", quality=max(1, quality if quality is not None else 90), **extra)
    elif mime == "image/webp":
        if text is not None:
            extra["xmp"] = _xmp(text)
        if quality is None or quality == 100:
            extra["lossless"] = True
        else:
            extra["quality"] = quality
        image.save(buffer, "WEBP", **extra)
    else:
        info = PngImagePlugin.PngInfo()
        if text is not None:
            info.add_text(PROVENANCE_KEY, text)
        image.save(buffer, "PNG", compress_level=1, pnginfo=info)
    return buffer.getvalue()


def provenance(model: str, prompt: str, n_contents: int, inputs: list[bytes]) -> dict[str, Any]:
    """What produced an output image; the prompt is capped so it fits a JPEG comment."""
    return {
        "model": model,
        "prompt": prompt[:MAX_PROVENANCE_PROMPT],
        "contents": n_contents,
        "input_sha256": [hashlib.sha256(data).hexdigest() for data in inputs],
    }


def read_provenance(image_bytes: bytes) -> dict[str, Any]:
    """Return the provenance JSON an emulator-made image carries (KeyError if it has none)."""
    with Image.open(io.BytesIO(image_bytes)) as image:
        if image.format == "PNG":
            raw: str | bytes = image.text[PROVENANCE_KEY]
        elif image.format == "JPEG":
            raw = image.info["comment"]
        elif image.format == "WEBP":
            xmp = image.info["xmp"]
            match = _XMP_RE.search(xmp.decode() if isinstance(xmp, bytes) else xmp)
            if match is None:
                raise KeyError("this WebP image's XMP carries no emulator provenance")
            raw = unescape(match.group(1))
        else:
            raise KeyError(f"{image.format} images carry no emulator provenance")
    return json.loads(raw)
