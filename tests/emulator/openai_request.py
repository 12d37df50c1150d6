"""Parsing and validation of OpenAI ``images/edits`` (multipart) and ``images/generations`` (JSON).

Both bodies are first reduced to :class:`Params` (scalar values by name, plus the
uploaded files), then :func:`validate` checks them against the model in a fixed
order (unknown parameters, prompt, images, options, cross-field rules, mask) and
returns an :class:`ImageRequest`, or raises a 400 shaped like the real one. In a
form every scalar arrives as a string, so numbers and booleans are parsed from
strings there, while JSON values must already have the right type.

Emulator choices (the real rules are not all documented): a repeated scalar field
is a 400; each image's declared content type must be ``image/png``, ``image/jpeg``
or ``image/webp`` (the real API rejects ``application/octet-stream``, which is what
an SDK sends for bare bytes without a file name) and the bytes must decode as PNG,
JPEG or WebP; known parameters the emulator does not implement (``markup``, ``svg``,
``frame_count``, ``frame_duration_ms``) are a 400 saying so. ``stream=true`` on a model that
does not stream is a 400 naming ``stream`` (code ``unsupported_parameter``, worded like the
``input_fidelity`` refusal: the real wording is not published), and so is ``stream`` with ``n``
above 1 (the stream's events carry no image index).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from PIL import Image

from . import images
from .openai_errors import (
    invalid,
    invalid_type,
    invalid_value,
    missing_parameter,
    model_not_found,
    unknown_parameter,
)
from .openai_models import (
    AUTO_BACKGROUND,
    AUTO_QUALITY,
    DEFAULT_MODEL,
    MODELS,
    STANDARD_SIZES,
    ImageModel,
)

MAX_PROMPT_CHARS = 32_000
MAX_IMAGES = 16
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_MASK_BYTES = 4 * 1024 * 1024
MAX_N = 10
MAX_LONG_SIDE, MAX_SHORT_SIDE = 3840, 2160
IMAGE_MIME: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp")
IMAGE_FIELDS: frozenset[str] = frozenset({"image", "image[]"})
OUTPUT_FORMATS: tuple[str, ...] = ("png", "webp", "jpeg")
BACKGROUNDS: tuple[str, ...] = ("transparent", "opaque", "auto")

_COMMON = frozenset(
    {
        "prompt",
        "model",
        "n",
        "size",
        "quality",
        "background",
        "output_format",
        "output_compression",
        "user",
        "safety_identifier",
        "stream",
        "partial_images",
        "complexity",
    }
)
KNOWN_PARAMS: dict[str, frozenset[str]] = {
    "edits": _COMMON | IMAGE_FIELDS | {"mask", "input_fidelity"},
    "generations": _COMMON | {"moderation"},
}
NOT_EMULATED: frozenset[str] = frozenset({"markup", "svg", "frame_count", "frame_duration_ms"})
_SIZE_RE = re.compile(r"(\d{1,5})x(\d{1,5})")
_INT_RE = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Upload:
    """One file part of a multipart body, kept as received."""

    field: str
    filename: str | None
    content_type: str
    data: bytes

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def describe(self) -> dict[str, Any]:
        """The request-log view: metadata and hash, never the bytes."""
        return {
            "field": self.field,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": len(self.data),
            "sha256": self.sha256,
        }


@dataclass
class Params:
    """A request body reduced to named values (form strings or JSON values) and image uploads."""

    values: dict[str, Any]
    images: list[Upload]
    form: bool


@dataclass(frozen=True)
class Decoded:
    upload: Upload
    image: Image.Image


@dataclass(frozen=True)
class ImageRequest:
    """A validated request; ``quality`` and ``background`` are already resolved from ``auto``."""

    endpoint: str
    model: ImageModel
    prompt: str
    images: tuple[Decoded, ...]
    mask: Decoded | None
    n: int
    #: None for ``auto`` (edits keep the first input's size, generations make 1024x1024).
    size: tuple[int, int] | None
    quality: str
    background: str
    output_format: str
    #: None unless given (webp/jpeg only); 100 means best quality (lossless webp).
    output_compression: int | None
    #: ``stream=true``: answered as server-sent events, ``partial_images`` drafts first.
    stream: bool = False
    partial_images: int = 0


def from_form(items: list[tuple[str, str | Upload]]) -> Params:
    """Group form parts: ``image`` / ``image[]`` files in order; every other name once."""
    values: dict[str, Any] = {}
    uploads: list[Upload] = []
    for name, value in items:
        if name in IMAGE_FIELDS:
            if not isinstance(value, Upload):
                raise invalid_type(name, "a file", "a string")
            uploads.append(value)
        elif name in values:
            raise invalid(f"Duplicate parameter: '{name}'. Send each parameter once.", name, "invalid_value")
        else:
            values[name] = value
    return Params(values, uploads, form=True)


def from_json(body: Any) -> Params:
    if not isinstance(body, dict):
        raise invalid("Invalid body: expected a JSON object.", None, "invalid_type")
    return Params(dict(body), [], form=False)


def resolve_model(params: Params) -> ImageModel:
    """The requested model (default ``gpt-image-2``); 404 for shut-down and unknown ids."""
    model = params.values.get("model")
    if model is None:
        return MODELS[DEFAULT_MODEL]
    if not isinstance(model, str):
        raise invalid_type("model", "a string", _kind(model))
    if model not in MODELS:
        raise model_not_found(model)
    return MODELS[model]


def _kind(value: Any) -> str:
    if isinstance(value, Upload):
        return "a file"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an object" if isinstance(value, dict) else "an array" if isinstance(value, list) else "null"


def _string(params: Params, name: str) -> str | None:
    value = params.values.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_type(name, "a string", _kind(value))
    return value


def _choice(params: Params, name: str, supported: tuple[str, ...]) -> str | None:
    value = _string(params, name)
    if value is not None and value not in supported:
        raise invalid_value(name, value, supported)
    return value


def _integer(params: Params, name: str, low: int, high: int) -> int | None:
    value = params.values.get(name)
    if value is None:
        return None
    if params.form and isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_type(name, "an integer", _kind(value))
    if value < low:
        raise invalid(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, but got {value} instead.",
            name,
            "integer_below_min_value",
        )
    if value > high:
        raise invalid(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, but got {value} instead.",
            name,
            "integer_above_max_value",
        )
    return value


def _boolean(params: Params, name: str) -> bool | None:
    value = params.values.get(name)
    if params.form and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value is not None and not isinstance(value, bool):
        raise invalid_type(name, "a boolean", _kind(value))
    return value


def _check_names(params: Params, endpoint: str) -> None:
    for name in params.values:
        if name in NOT_EMULATED or name.startswith("svg["):
            raise invalid(f"Retouch emulator: '{name}' is not emulated.", name, "unsupported_parameter")
        if name not in KNOWN_PARAMS[endpoint]:
            raise unknown_parameter(name)
        if name != "mask" and isinstance(params.values[name], Upload):
            raise invalid_type(name, "a string", "a file")


def _prompt(params: Params) -> str:
    prompt = _string(params, "prompt")
    if prompt is None:
        raise missing_parameter("prompt")
    if not prompt:
        raise invalid(
            "Invalid 'prompt': empty string. Expected a string with minimum length 1, but got an empty string instead.",
            "prompt",
            "empty_string",
        )
    if len(prompt) > MAX_PROMPT_CHARS:
        raise invalid(
            f"Invalid 'prompt': string too long. Expected a string with maximum length {MAX_PROMPT_CHARS}, "
            f"but got a string with length {len(prompt)} instead.",
            "prompt",
            "string_above_max_length",
        )
    return prompt


def _decode(upload: Upload, label: str, param: str, max_bytes: int) -> Decoded:
    if upload.content_type not in IMAGE_MIME:
        raise invalid(
            f"Invalid file '{label}': unsupported mimetype ('{upload.content_type}'). Supported file formats "
            f"are {', '.join(repr(m) for m in IMAGE_MIME[:-1])}, and {IMAGE_MIME[-1]!r}.",
            param,
            "unsupported_file_mimetype",
        )
    if len(upload.data) >= max_bytes:
        raise invalid(
            f"Invalid file '{label}': file too large ({len(upload.data)} bytes). The maximum allowed size is "
            f"{max_bytes // (1024 * 1024)} MB.",
            param,
            "file_too_large",
        )
    image = images.decode(upload.data, upload.content_type)
    if image is None or image.format not in ("PNG", "JPEG", "WEBP"):
        raise invalid(
            f"Invalid image file or mode for {label}, please check your image file.",
            param,
            "invalid_image_file",
        )
    return Decoded(upload, image)


def _images(params: Params) -> tuple[Decoded, ...]:
    if not params.images:
        raise missing_parameter("image")
    if len(params.images) > MAX_IMAGES:
        raise invalid(
            f"Invalid 'image': array too long. Expected an array with maximum length {MAX_IMAGES}, but got an "
            f"array with length {len(params.images)} instead.",
            "image",
            "array_above_max_length",
        )
    single = len(params.images) == 1
    return tuple(
        _decode(u, "image" if single else f"image {i}", "image", MAX_IMAGE_BYTES)
        for i, u in enumerate(params.images, 1)
    )


def _has_alpha(image: Image.Image) -> bool:
    return "A" in image.getbands() or "transparency" in image.info


def _mask(params: Params, first: Decoded) -> Decoded | None:
    upload = params.values.get("mask")
    if upload is None:
        return None
    if not isinstance(upload, Upload):
        raise invalid_type("mask", "a file", _kind(upload))
    mask = _decode(upload, "mask", "mask", MAX_MASK_BYTES)
    if mask.image.format != "PNG":
        raise invalid("Invalid mask image format - mask must be a PNG file.", "mask", "invalid_mask_image")
    if not _has_alpha(mask.image):
        raise invalid(
            "Invalid mask image format - mask image missing alpha channel.", "mask", "invalid_mask_image"
        )
    if mask.image.size != first.image.size:
        (mw, mh), (iw, ih) = mask.image.size, first.image.size
        raise invalid(
            f"Invalid mask image: mask and image must have the same dimensions (mask: {mw}x{mh}, image: {iw}x{ih}).",
            "mask",
            "invalid_mask_image",
        )
    return mask


def _size(params: Params, model: ImageModel) -> tuple[int, int] | None:
    value = _string(params, "size")
    if value is None or value == "auto":
        return None
    match = _SIZE_RE.fullmatch(value)
    if value in STANDARD_SIZES or (model.arbitrary_sizes and match):
        assert match is not None
        width, height = int(match.group(1)), int(match.group(2))
    else:
        supported = STANDARD_SIZES + (("WIDTHxHEIGHT",) if model.arbitrary_sizes else ())
        raise invalid_value("size", value, supported)
    problem = None
    if width == 0 or height == 0 or width % 16 or height % 16:
        problem = "width and height must both be positive multiples of 16"
    elif max(width, height) > 3 * min(width, height):
        problem = "the aspect ratio must be between 1:3 and 3:1"
    elif max(width, height) > MAX_LONG_SIDE or min(width, height) > MAX_SHORT_SIDE:
        problem = f"the maximum supported resolution is {MAX_LONG_SIDE}x{MAX_SHORT_SIDE}"
    if problem:
        raise invalid(f"Invalid size '{value}': {problem}.", "size", "invalid_value")
    return (width, height)


def _input_fidelity(params: Params, model: ImageModel) -> None:
    if params.values.get("input_fidelity") is None:
        return
    if not model.input_fidelity:
        raise invalid(
            "input_fidelity is not supported for this model.", "input_fidelity", "unsupported_parameter"
        )
    _choice(params, "input_fidelity", model.input_fidelity)


def _extras(params: Params) -> None:
    """Accepted parameters that do not change the emulated answer."""
    _string(params, "user")
    _string(params, "safety_identifier")
    _choice(params, "complexity", ("low", "medium", "high"))


def _stream(params: Params, model: ImageModel, n: int) -> tuple[bool, int]:
    """``stream`` and ``partial_images`` (0-3, default 0), checked against the model and ``n``."""
    partial_images = _integer(params, "partial_images", 0, 3) or 0
    stream = bool(_boolean(params, "stream"))
    if stream and not model.streams:
        raise invalid("stream is not supported for this model.", "stream", "unsupported_parameter")
    if stream and n > 1:
        raise invalid("Retouch emulator: stream=true takes n=1 only.", "n", "unsupported_parameter")
    return stream, partial_images


def validate(params: Params, model: ImageModel, endpoint: str) -> ImageRequest:
    """Check every parameter (see the module docstring for the order); decodes the images."""
    _check_names(params, endpoint)
    prompt = _prompt(params)
    decoded = _images(params) if endpoint == "edits" else ()
    n = _integer(params, "n", 1, MAX_N) or 1
    size = _size(params, model)
    quality = _choice(params, "quality", model.qualities) or "auto"
    background = _choice(params, "background", BACKGROUNDS) or "auto"
    output_format = _choice(params, "output_format", OUTPUT_FORMATS) or "png"
    compression = _integer(params, "output_compression", 0, 100)
    _input_fidelity(params, model)
    _choice(params, "moderation", ("low", "auto"))
    _extras(params)
    stream, partial_images = _stream(params, model, n)
    if background == "transparent" and output_format == "jpeg":
        raise invalid(
            "Transparent backgrounds are only supported with output_format 'png' or 'webp'.",
            "background",
            "invalid_value",
        )
    if compression is not None and output_format == "png":
        raise invalid(
            "Invalid 'output_compression': output compression is only supported for the 'webp' and 'jpeg' "
            "output formats.",
            "output_compression",
            "invalid_value",
        )
    mask = _mask(params, decoded[0]) if endpoint == "edits" else None
    return ImageRequest(
        endpoint=endpoint,
        model=model,
        prompt=prompt,
        images=decoded,
        mask=mask,
        n=n,
        size=size,
        quality=AUTO_QUALITY if quality == "auto" else quality,
        background=AUTO_BACKGROUND if background == "auto" else background,
        output_format=output_format,
        output_compression=compression,
        stream=stream,
        partial_images=partial_images,
    )
