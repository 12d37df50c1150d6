"""Generation options from untrusted input (the options panel or an API caller), checked once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from chat.catalog import (
    DEFAULT_OPENAI_MODEL,
    OPENAI_BACKGROUNDS,
    SAFETY_THRESHOLDS,
    gemini_model,
    openai_model,
)
from chat.domain import GenerationOptions, OpenAIOptions, Route
from chat.errors import InputError

__all__ = ["AUTO", "parse_options"]

AUTO = "auto"
_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "top_k": (1, 1000),
    "max_output_tokens": (1, 65536),
    "seed": (0, 2**31 - 1),
    "openai_output_compression": (0, 100),
    "budget_usd": (0, 10_000),
}
_INTEGERS = {"top_k", "max_output_tokens", "seed", "openai_output_compression"}
OPENAI_KEYS = tuple(f"openai_{name}" for name in OpenAIOptions.__dataclass_fields__)
MAX_STOP_SEQUENCES = 5


def parse_options(
    data: Mapping[str, Any] | None, *, default_model: str, default_openai_model: str = DEFAULT_OPENAI_MODEL
) -> GenerationOptions:
    """Validate and normalise; empty values and "auto" mean "let the model decide".

    OpenAI settings come flat (``openai_quality``, as the options panel sends them) or
    nested (``{"openai": {"quality": ...}}``, as ``GenerationOptions.to_dict`` writes them).
    """
    data = dict(data or {})
    for key, value in dict(data.pop("openai", None) or {}).items():
        data[f"openai_{key}"] = value
    unknown = set(data) - set(GenerationOptions.__dataclass_fields__) - set(OPENAI_KEYS)
    if unknown:
        raise InputError(f"Unknown option(s): {', '.join(sorted(unknown))}.")
    model_id = str(data.get("model") or "").strip()
    if not model_id or model_id == AUTO:
        model_id = default_model
    model = gemini_model(model_id)
    numbers = {name: _number(name, data.get(name)) for name in _RANGES if not name.startswith("openai_")}
    aspect = _choice("aspect ratio", data.get("aspect_ratio"), model.aspect_ratios, model_id)
    size = _choice("image size", data.get("image_size"), model.image_sizes, model_id)
    safety = _choice("safety threshold", data.get("safety_threshold"), SAFETY_THRESHOLDS, model_id)
    return GenerationOptions(
        model=model_id,
        temperature=numbers["temperature"],
        top_p=numbers["top_p"],
        top_k=_as_int(numbers["top_k"]),
        max_output_tokens=_as_int(numbers["max_output_tokens"]),
        seed=_as_int(numbers["seed"]),
        stop_sequences=_stop_sequences(data.get("stop_sequences")),
        aspect_ratio=aspect,
        image_size=size,
        safety_threshold=safety,
        route=_route(data.get("route")),
        budget_usd=_number("budget_usd", data.get("budget_usd")) or None,
        openai=_openai(data, default_openai_model),
    )


def _route(value: Any) -> Route:
    if value in (None, ""):
        return Route.AUTO
    try:
        return Route(value)
    except ValueError:
        choices = ", ".join(r.value for r in Route)
        raise InputError(f"Provider \u201c{value}\u201d is not one of: {choices}.") from None


def _openai(data: Mapping[str, Any], default_model: str) -> OpenAIOptions:
    model_id = str(data.get("openai_model") or "").strip()
    if not model_id or model_id == AUTO:
        model_id = default_model
    model = openai_model(model_id)
    size = data.get("openai_size")
    if size not in (None, "", AUTO) and not model.accepts_size(str(size)):
        raise InputError(
            f"{model_id} does not support size \u201c{size}\u201d (use WIDTHxHEIGHT, e.g. 1536x1024)."
        )
    output_format = _choice("output format", data.get("openai_output_format"), model.output_formats, model_id)
    compression = _number("openai_output_compression", data.get("openai_output_compression"))
    if compression is not None and output_format not in ("webp", "jpeg"):
        raise InputError("Output compression applies only to WebP or JPEG output.")
    return OpenAIOptions(
        model=model_id,
        size=None if size in (None, "", AUTO) else str(size),
        quality=_choice("quality", data.get("openai_quality"), model.qualities, model_id),
        background=_choice("background", data.get("openai_background"), OPENAI_BACKGROUNDS, model_id),
        output_format=output_format,
        output_compression=_as_int(compression),
        input_fidelity=_choice(
            "input fidelity", data.get("openai_input_fidelity"), model.input_fidelity, model_id
        ),
    )


def _number(name: str, value: Any) -> float | None:
    if value is None or value == "" or value == AUTO:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{_label(name)} must be a number, not \u201c{value}\u201d.") from None
    low, high = _RANGES[name]
    if math.isnan(number) or not low <= number <= high:
        raise InputError(f"{_label(name)} must be between {_bound(low)} and {_bound(high)}.")
    if name in _INTEGERS and not number.is_integer():
        raise InputError(f"{_label(name)} must be a whole number.")
    return number


def _as_int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _choice(label: str, value: Any, allowed: tuple[str, ...], model_id: str) -> str | None:
    if value is None or value == "" or value == AUTO:
        return None
    if value not in allowed:
        choices = ", ".join(allowed) or "none"
        raise InputError(f"{model_id} does not support {label} \u201c{value}\u201d (choose from: {choices}).")
    return str(value)


def _stop_sequences(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    items = value.splitlines() if isinstance(value, str) else list(value)
    cleaned = tuple(str(s) for s in items if str(s).strip())
    if len(cleaned) > MAX_STOP_SEQUENCES:
        raise InputError(f"At most {MAX_STOP_SEQUENCES} stop sequences are allowed.")
    return cleaned


def _bound(value: float) -> str:
    """1000 and 2147483647 as written, not 1e+03 or 2.14748e+09; 2.0 as 2."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()
