"""Generation options from untrusted input (the options panel or an API caller), checked once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from chat.config import DEFAULTS
from chat.domain import MAX_VARIANTS, GenerationOptions, OpenAIOptions, Route
from chat.errors import InputError
from chat.providers.gemini.catalog import SAFETY_THRESHOLDS, gemini_model
from chat.providers.model_ids import MODEL_ID_RULE, is_model_id
from chat.providers.openai.catalog import OPENAI_BACKGROUNDS, openai_model

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
    "variants": (1, MAX_VARIANTS),
}
_INTEGERS = {"top_k", "max_output_tokens", "seed", "openai_output_compression", "variants"}
OPENAI_KEYS = tuple(f"openai_{name}" for name in OpenAIOptions.__dataclass_fields__)
MAX_STOP_SEQUENCES = 5
#: Our own bound (Gemini documents none): a stop sequence is a marker like "END", not a text.
MAX_STOP_SEQUENCE_CHARS = 100
_SHOWN_CHARS = 40
_NOT_AN_OBJECT = 'Options must be an object of names and values, e.g. {"aspect_ratio": "16:9"}.'


def parse_options(
    data: Mapping[str, Any] | None,
    *,
    default_model: str,
    default_openai_model: str = DEFAULTS.openai_image_model,
) -> GenerationOptions:
    """Validate and normalise; empty values and "auto" mean "let the model decide".

    OpenAI settings come flat (``openai_quality``, as the options panel sends them) or
    nested (``{"openai": {"quality": ...}}``, as ``GenerationOptions.to_dict`` writes them).
    """
    if not isinstance(data, Mapping | None):
        raise InputError(_NOT_AN_OBJECT)
    data = dict(data or {})
    nested = data.pop("openai", None)
    if not isinstance(nested, Mapping | None):
        raise InputError(_NOT_AN_OBJECT)
    for key, value in dict(nested or {}).items():
        data[f"openai_{key}"] = value
    unknown = set(data) - set(GenerationOptions.__dataclass_fields__) - set(OPENAI_KEYS)
    if unknown:
        raise InputError(f"Unknown option(s): {', '.join(sorted(unknown))}.")
    model_id = _model_id("Model", data.get("model"), default_model)
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
        variants=_as_int(numbers["variants"]) or 1,
    )


def _route(value: Any) -> Route:
    if value in (None, ""):
        return Route.AUTO
    try:
        return Route(value)
    except ValueError:
        choices = ", ".join(r.value for r in Route)
        raise InputError(f"Provider \u201c{_shown(value)}\u201d is not one of: {choices}.") from None


def _openai(data: Mapping[str, Any], default_model: str) -> OpenAIOptions:
    model_id = _model_id("OpenAI model", data.get("openai_model"), default_model)
    model = openai_model(model_id)
    size = data.get("openai_size")
    if size not in (None, "", AUTO) and not model.accepts_size(str(size)):
        raise InputError(
            f"{model_id} does not support size \u201c{_shown(size)}\u201d (use WIDTHxHEIGHT, e.g. 1536x1024)."
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


def _model_id(label: str, value: object, default: str) -> str:
    """The id asked for (blank or "auto": the default), exactly as given: it ends up in a URL path.

    Surrounding spaces are refused rather than trimmed, so what is checked is what would be sent.
    """
    if value is None or (isinstance(value, str) and value.strip() in ("", AUTO)):
        value = default
    if not is_model_id(value):
        raise InputError(f"{label} \u201c{_shown(value)}\u201d is not a model id: use {MODEL_ID_RULE}.")
    return value


def _number(name: str, value: Any) -> float | None:
    if value is None or value == "" or value == AUTO:
        return None
    low, high = _RANGES[name]
    if isinstance(value, bool):  # float(True) is 1.0: a JSON true is not a number
        raise InputError(f"{_label(name)} must be a number, not \u201c{value}\u201d.")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        raise InputError(f"{_label(name)} must be between {_bound(low)} and {_bound(high)}.") from None
    except (TypeError, ValueError):
        raise InputError(f"{_label(name)} must be a number, not \u201c{_shown(value)}\u201d.") from None
    if math.isnan(number) or not low <= number <= high:
        raise InputError(f"{_label(name)} must be between {_bound(low)} and {_bound(high)}.")
    if name in _INTEGERS and not number.is_integer():
        raise InputError(f"{_label(name)} must be a whole number.")
    return number


def _as_int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _choice(label: str, value: object, allowed: tuple[str, ...], model_id: str) -> str | None:
    if value is None or value == "" or value == AUTO:
        return None
    if value not in allowed:
        choices = ", ".join(allowed) or "none"
        raise InputError(
            f"{model_id} does not support {label} \u201c{_shown(value)}\u201d (choose from: {choices})."
        )
    return str(value)


def _stop_sequences(value: object) -> tuple[str, ...]:
    """One per line of a text, or a list of texts; blank ones are dropped."""
    if value is None:
        return ()
    if isinstance(value, str):
        items = value.splitlines()
    elif isinstance(value, list | tuple) and all(isinstance(s, str) for s in value):
        items = list(value)
    else:
        raise InputError("Stop sequences must be text: one per line, or a list of strings.")
    cleaned = tuple(s for s in items if s.strip())
    if len(cleaned) > MAX_STOP_SEQUENCES:
        raise InputError(f"At most {MAX_STOP_SEQUENCES} stop sequences are allowed.")
    if any(len(s) > MAX_STOP_SEQUENCE_CHARS for s in cleaned):
        raise InputError(f"A stop sequence can be at most {MAX_STOP_SEQUENCE_CHARS} characters long.")
    return cleaned


def _shown(value: object) -> str:
    """A refused value quoted on one line: control characters escaped, cut when long."""
    text = repr(value)[1:-1] if isinstance(value, str) else str(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "\u2026"


def _bound(value: float) -> str:
    """1000 and 2147483647 as written, not 1e+03 or 2.14748e+09; 2.0 as 2."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()
