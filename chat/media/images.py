"""Upload validation and normalisation with Pillow.

Uploads are checked by decoding, never by filename: the header is read first so a
decompression bomb is refused before any pixel is allocated. Images a provider accepts
as they are (PNG, JPEG, WebP, upright, 8-bit, within the size limit) are kept byte for
byte; anything else is normalised once to a PNG master.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from chat.config import DEFAULTS
from chat.errors import InputError

__all__ = [
    "ImageLimits",
    "MaskImages",
    "PreparedImage",
    "describe_size",
    "image_size",
    "mask_images",
    "painted_from_mask",
    "png_bytes",
    "painted_region",
    "prepare_upload",
    "read_region",
    "verify_image",
    "region_png",
]

_KEEP_AS_IS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_KEEP_MODES = {"RGB", "RGBA", "L", "LA", "P"}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = DEFAULTS.max_upload_bytes
    max_pixels: int = DEFAULTS.max_upload_pixels
    max_side: int = DEFAULTS.max_input_side


@dataclass(frozen=True)
class PreparedImage:
    data: bytes
    mime_type: str
    width: int
    height: int


def describe_size(n_bytes: int) -> str:
    if n_bytes >= 1024 * 1024:
        return f"{n_bytes / (1024 * 1024):.1f} MB"
    return f"{n_bytes / 1024:.0f} kB"


def prepare_upload(raw: bytes, *, name: str, limits: ImageLimits) -> PreparedImage:
    """Decode, check and normalise one uploaded file; raises InputError with a sentence for the user."""
    if not raw:
        raise InputError(f"\u201c{name}\u201d is empty (0 bytes). Please upload the photo again.")
    if len(raw) > limits.max_bytes:
        raise InputError(
            f"\u201c{name}\u201d is {describe_size(len(raw))}; the limit is {describe_size(limits.max_bytes)}. "
            "Please upload a smaller file."
        )
    image = _open_checked(raw, name=name, limits=limits)
    fmt = image.format or ""
    if fmt in _KEEP_AS_IS and _needs_no_change(image, limits):
        return PreparedImage(raw, _KEEP_AS_IS[fmt], image.width, image.height)
    normalised = _normalise(image, limits)
    out = io.BytesIO()
    normalised.save(out, format="PNG", optimize=False)
    return PreparedImage(out.getvalue(), "image/png", normalised.width, normalised.height)


def verify_image(data: bytes) -> tuple[int, int]:
    """Check bytes we did not make (a provider's answer, an import); ValueError if broken.

    A PNG is checked chunk by chunk through IEND against each chunk's CRC (Pillow's
    ``verify``): that catches a cut-off or damaged file in ~1 ms, where decoding a 1024x1024
    answer costs ~35 ms on every turn. Other formats carry no checksums, so they are decoded.
    Done once, where the bytes arrive; later code only needs ``image_size``.
    """
    return _size(data, check=True)


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height from the header alone, for images already verified; ValueError if unreadable."""
    return _size(data, check=False)


def _size(data: bytes, *, check: bool) -> tuple[int, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                size = image.size
                if check and image.format == "PNG":
                    image.verify()
                elif check:
                    image.load()
                return size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError("not a decodable image" if check else "not a readable image") from exc


def _open_checked(raw: bytes, *, name: str, limits: ImageLimits) -> Image.Image:
    unreadable = InputError(
        f"\u201c{name}\u201d is not an image Retouch can read. Please upload a PNG, JPEG or WebP photo."
    )
    too_large = f"the limit is {limits.max_pixels / 1e6:.1f} megapixels. Please upload a smaller image."
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below decides; Pillow's warning would only add noise (or raise).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
    except Image.DecompressionBombError as exc:
        raise InputError(f"\u201c{name}\u201d has far too many pixels; {too_large}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise unreadable from exc
    megapixels = image.width * image.height
    if megapixels > limits.max_pixels:
        raise InputError(
            f"\u201c{name}\u201d is {image.width}\u00d7{image.height} ({megapixels / 1e6:.1f} megapixels); "
            + too_large
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
    ) as exc:
        raise unreadable from exc
    return image


def _needs_no_change(image: Image.Image, limits: ImageLimits) -> bool:
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    return (
        orientation == 1
        and image.mode in _KEEP_MODES
        and max(image.size) <= limits.max_side
        and not getattr(image, "is_animated", False)
    )


def _normalise(image: Image.Image, limits: ImageLimits) -> Image.Image:
    """First frame, upright, 8-bit RGB(A), long side within the limit."""
    if getattr(image, "is_animated", False):
        image.seek(0)
    upright = ImageOps.exif_transpose(image) or image
    has_alpha = upright.mode in {"RGBA", "LA", "PA"} or (
        upright.mode == "P" and "transparency" in upright.info
    )
    if upright.mode.startswith("I;16") or upright.mode == "I":
        upright = upright.point(lambda v: v / 256).convert("L")
    converted = upright.convert("RGBA" if has_alpha else "RGB")
    if max(converted.size) > limits.max_side:
        converted.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    return converted


MARK_COLOUR = (255, 0, 255)


@dataclass(frozen=True)
class MaskImages:
    """The painted region in the two forms providers understand."""

    mask_png: bytes  # OpenAI: same size as the image, alpha 0 where the edit goes
    marked_png: bytes  # Gemini: the image with the region tinted magenta


def painted_region(layers: list[Image.Image], size: tuple[int, int]) -> Image.Image | None:
    """Union of the brush strokes (alpha > 0) as an "L" image of ``size``; None if nothing was painted."""
    region = Image.new("L", size, 0)
    for layer in layers:
        alpha = layer.convert("RGBA").getchannel("A").point(lambda a: 255 if a > 0 else 0)
        if alpha.size != size:
            alpha = alpha.resize(size, Image.Resampling.NEAREST)
        region.paste(255, mask=alpha)
    return region if region.getbbox() else None


def read_region(painted_png: bytes) -> Image.Image:
    """A painted region sent as PNG (white = change here); InputError if unusable or empty."""
    try:
        with Image.open(io.BytesIO(painted_png)) as opened:
            region = opened.convert("L").point(lambda v: 255 if v else 0)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError("The painted area could not be read; please paint it again.") from exc
    if region.getbbox() is None:
        raise InputError("The painted area is empty: paint over what should change, or clear the painting.")
    return region


def painted_from_mask(mask_png: bytes) -> bytes:
    """An OpenAI-style mask (alpha 0 = edit here) as the white-on-black region the service takes."""
    try:
        with Image.open(io.BytesIO(mask_png)) as opened:
            alpha = opened.convert("RGBA").getchannel("A")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError("The mask is not a PNG Retouch can read.") from exc
    return png_bytes(alpha.point(lambda a: 255 if a == 0 else 0))


def region_png(region: Image.Image) -> bytes:
    return png_bytes(region.convert("L"))


def mask_images(image_bytes: bytes, region: Image.Image) -> MaskImages:
    """Build the OpenAI mask and the Gemini marked copy for ``region`` ("L", 255 = change here)."""
    with Image.open(io.BytesIO(image_bytes)) as opened:
        base = ImageOps.exif_transpose(opened).convert("RGB")
    if region.size != base.size:
        region = region.resize(base.size, Image.Resampling.NEAREST)
    keep = region.point(lambda v: 0 if v else 255)
    mask = Image.new("RGBA", base.size, (0, 0, 0, 255))
    mask.putalpha(keep)
    tint = Image.new("RGB", base.size, MARK_COLOUR)
    marked = Image.composite(Image.blend(base, tint, 0.55), base, region)
    return MaskImages(png_bytes(mask), png_bytes(marked))


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
