"""Quick edits: crop, rotate, flip and resize a version with Pillow, instantly and at no cost.

No model is asked: the result is stored as a version of its own (chat/conversation/service.py
``quick_edit``) and replayed to providers as an image the user supplied. What the edit is comes
from untrusted input (a page's numbers, an API caller's JSON), so ``parse_quick_edit`` checks it
once; what depends on the image (a crop box inside it, the size of a resize) is checked by
``apply_quick_edit`` against the image itself, before any pixel of the result is made.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from chat.domain import mime_for
from chat.errors import InputError
from chat.media.images import ImageLimits

__all__ = [
    "MIN_SIDE",
    "EditedImage",
    "QuickEdit",
    "QuickEditKind",
    "apply_quick_edit",
    "parse_quick_edit",
]

#: The smallest side a quick edit may leave: anything smaller is no picture a model can work on.
MIN_SIDE = 16
#: The longest side a resize may make, whatever the upload limit says.
MAX_RESIZE_SIDE = 4096
JPEG_QUALITY = 95


class QuickEditKind(StrEnum):
    CROP = "crop"
    ROTATE = "rotate"
    FLIP = "flip"
    RESIZE = "resize"


@dataclass(frozen=True)
class QuickEdit:
    """One quick edit, checked: the fields its kind uses are set, the others left at their defaults.

    crop: ``box`` is left, top, right, bottom, in pixels or (``percent``) in percent of the width
    and height; rotate: ``degrees`` clockwise (90, 180, 270); flip: ``direction`` ("horizontal"
    mirrors left and right, "vertical" top and bottom); resize: ``width`` and ``height`` in pixels,
    one of them None to keep the aspect ratio.
    """

    kind: QuickEditKind
    box: tuple[float, float, float, float] = (0, 0, 0, 0)
    percent: bool = False
    degrees: int = 0
    direction: str = ""
    width: int | None = None
    height: int | None = None

    def describe(self) -> str:
        """What the edit did, in a few words: the version's caption ("rotate 90° right") and the replay's note."""
        if self.kind is QuickEditKind.ROTATE:
            return {90: "rotate 90\u00b0 right", 180: "rotate 180\u00b0", 270: "rotate 90\u00b0 left"}[
                self.degrees
            ]
        if self.kind is QuickEditKind.FLIP:
            return f"flip {self.direction}"
        if self.kind is QuickEditKind.CROP:
            unit = "%" if self.percent else " px"
            left, top, right, bottom = (f"{value:g}" for value in self.box)
            return f"crop {left},{top}\u2013{right},{bottom}{unit}"
        return f"resize to {self.width or 'auto'}\u00d7{self.height or 'auto'}"

    def to_dict(self) -> dict[str, Any]:
        """The form ``parse_quick_edit`` takes (what the API documents)."""
        if self.kind is QuickEditKind.CROP:
            left, top, right, bottom = self.box
            unit = "percent" if self.percent else "px"
            return {"kind": "crop", "left": left, "top": top, "right": right, "bottom": bottom, "unit": unit}
        if self.kind is QuickEditKind.ROTATE:
            return {"kind": "rotate", "degrees": self.degrees}
        if self.kind is QuickEditKind.FLIP:
            return {"kind": "flip", "direction": self.direction}
        return {"kind": "resize", "width": self.width, "height": self.height}


@dataclass(frozen=True)
class EditedImage:
    data: bytes
    mime_type: str
    width: int
    height: int


def parse_quick_edit(data: object) -> QuickEdit:
    """A quick edit from untrusted JSON-like input; InputError with a sentence the user can act on.

    {"kind": "crop", "left": 0, "top": 0, "right": 50, "bottom": 100, "unit": "percent" | "px"},
    {"kind": "rotate", "degrees": 90 | 180 | 270} (clockwise), {"kind": "flip", "direction":
    "horizontal" | "vertical"}, {"kind": "resize", "width": 512, "height": 512} (one may be null).
    """
    if not isinstance(data, Mapping):
        raise InputError('A quick edit is an object such as {"kind": "rotate", "degrees": 90}.')
    kind = data.get("kind")
    if kind not in tuple(QuickEditKind):
        raise InputError("A quick edit is one of crop, rotate, flip or resize.")
    kind = QuickEditKind(kind)
    if kind is QuickEditKind.ROTATE:
        degrees = _number(data.get("degrees"))
        if degrees is None or degrees not in (90, 180, 270):
            raise InputError("Rotate by 90, 180 or 270 degrees (clockwise).")
        return QuickEdit(kind, degrees=int(degrees))
    if kind is QuickEditKind.FLIP:
        direction = data.get("direction")
        if direction not in ("horizontal", "vertical"):
            raise InputError("Flip is horizontal (left and right swapped) or vertical (top and bottom).")
        return QuickEdit(kind, direction=str(direction))
    if kind is QuickEditKind.RESIZE:
        width, height = _side(data.get("width"), "width"), _side(data.get("height"), "height")
        if width is None and height is None:
            raise InputError("Give the new width, the new height, or both (in pixels).")
        return QuickEdit(kind, width=width, height=height)
    unit = data.get("unit", "px")
    if unit not in ("px", "percent"):
        raise InputError('A crop box is in pixels ("px") or in percent ("percent").')
    values = [_number(data.get(name)) for name in ("left", "top", "right", "bottom")]
    box = [value for value in values if value is not None and value >= 0]
    if len(box) != 4:
        raise InputError("A crop box is four numbers, none below 0: left, top, right and bottom.")
    if unit == "percent" and max(box) > 100:
        raise InputError("A crop box in percent goes from 0 to 100.")
    return QuickEdit(kind, box=(box[0], box[1], box[2], box[3]), percent=unit == "percent")


def apply_quick_edit(image_bytes: bytes, edit: QuickEdit, *, limits: ImageLimits) -> EditedImage:
    """The edited image, in the format it came in (PNG stays PNG, JPEG stays JPEG at quality 95,
    WebP stays WebP; anything else becomes PNG), upright first if its EXIF said to turn it.
    InputError if the edit does not fit the image or the result would be too small or too large."""
    source = _open(image_bytes, limits)
    fmt = source.format if source.format in ("PNG", "JPEG", "WEBP") else "PNG"
    icc = source.info.get("icc_profile")
    upright = ImageOps.exif_transpose(source)
    edited = _edited(upright, edit, limits)
    out = io.BytesIO()
    params: dict[str, Any] = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        if edited.mode not in ("RGB", "L", "CMYK"):
            edited = edited.convert("RGB")
        params |= {"quality": JPEG_QUALITY, "subsampling": 0}
    elif fmt == "WEBP":
        params |= {"quality": JPEG_QUALITY}
    edited.save(out, format=fmt, **params)
    return EditedImage(out.getvalue(), mime_for(fmt), edited.width, edited.height)


def _edited(image: Image.Image, edit: QuickEdit, limits: ImageLimits) -> Image.Image:
    width, height = image.size
    if edit.kind is QuickEditKind.ROTATE:
        turn = {
            90: Image.Transpose.ROTATE_270,
            180: Image.Transpose.ROTATE_180,
            270: Image.Transpose.ROTATE_90,
        }
        return image.transpose(turn[edit.degrees])
    if edit.kind is QuickEditKind.FLIP:
        mirror = (
            Image.Transpose.FLIP_LEFT_RIGHT
            if edit.direction == "horizontal"
            else Image.Transpose.FLIP_TOP_BOTTOM
        )
        return image.transpose(mirror)
    if edit.kind is QuickEditKind.CROP:
        box = _pixel_box(edit, width, height)
        return image.crop(box)
    size = _new_size(edit, width, height, limits)
    if image.mode not in ("RGB", "RGBA", "L", "LA"):  # a palette resized would use the nearest pixel only
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    return image.resize(size, Image.Resampling.LANCZOS)


def _pixel_box(edit: QuickEdit, width: int, height: int) -> tuple[int, int, int, int]:
    """The crop box in pixels, inside the image and at least ``MIN_SIDE`` on each side."""
    left, top, right, bottom = edit.box
    if edit.percent:
        left, right = left * width / 100, right * width / 100
        top, bottom = top * height / 100, bottom * height / 100
    box = (round(left), round(top), round(right), round(bottom))
    if box[2] > width or box[3] > height:
        raise InputError(
            f"The crop box goes outside the image, which is {width}\u00d7{height} pixels: "
            f"right is at most {width}, bottom at most {height}."
        )
    if box[2] - box[0] < MIN_SIDE or box[3] - box[1] < MIN_SIDE:
        raise InputError(
            f"The crop box is empty or too small: right must be at least {MIN_SIDE} pixels past left, "
            f"and bottom {MIN_SIDE} past top."
        )
    return box


def _new_size(edit: QuickEdit, width: int, height: int, limits: ImageLimits) -> tuple[int, int]:
    """The resize's size (a missing side keeps the aspect ratio), within the sides and pixels allowed."""
    new_width = edit.width or max(1, round(width * (edit.height or height) / height))
    new_height = edit.height or max(1, round(height * (edit.width or width) / width))
    most = min(limits.max_side, MAX_RESIZE_SIDE)
    if not (MIN_SIDE <= new_width <= most and MIN_SIDE <= new_height <= most):
        raise InputError(
            f"That makes the image {new_width}\u00d7{new_height} pixels; each side must be "
            f"{MIN_SIDE}\u2013{most} pixels."
        )
    if new_width * new_height > limits.max_pixels:
        raise InputError(
            f"That makes the image {new_width * new_height / 1e6:.1f} megapixels; the limit is "
            f"{limits.max_pixels / 1e6:.1f}."
        )
    return new_width, new_height


def _open(image_bytes: bytes, limits: ImageLimits) -> Image.Image:
    """The stored image, decoded: refused before its pixels are allocated if it has too many."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(image_bytes))
            if image.width * image.height > limits.max_pixels:
                raise InputError(
                    f"This version is {image.width}\u00d7{image.height} pixels, more than a quick edit takes "
                    f"({limits.max_pixels / 1e6:.1f} megapixels)."
                )
            image.load()
    except Image.DecompressionBombError as exc:
        raise InputError("This version has far more pixels than a quick edit takes.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError("This version's image cannot be read, so it cannot be edited here.") from exc
    return image


def _number(value: object) -> float | None:
    """A finite JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value


def _side(value: object, name: str) -> int | None:
    """A resize's side: a whole number of pixels, or None (keep the aspect ratio)."""
    if value is None or value == "":
        return None
    number = _number(value)
    if number is None or number != int(number) or number < 1:
        raise InputError(f"The new {name} is a whole number of pixels.")
    return int(number)
