"""What each current Gemini image model accepts, as data checked before any request.

Facts from ../shared/reference/gemini-api.md §1-§2 (Nov 2026). The 2.0, 2.5 and every
``*-preview`` image model are shut down; ids are configurable because they keep moving.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_GEMINI_MODEL",
    "GEMINI_MODELS",
    "GeminiModel",
    "MODEL_ID_MAX_CHARS",
    "MODEL_ID_RULE",
    "SAFETY_THRESHOLDS",
    "gemini_model",
    "is_model_id",
]

# --- model ids ------------------------------------------------------------------------------
# Gemini puts the id into the URL path (``models/{id}:generateContent``) and OpenAI into the
# body. Every id either provider has used (gemini-3.1-flash-image, gemini-nano-banana-2.1,
# gemini-2.0-flash-exp-image-generation, gpt-image-2.5-sunburst-2026-09-08, chatgpt-image-latest,
# dall-e-3) is lowercase words and numbers joined by single dots, dashes or underscores. Nothing
# else is admitted, so an id can never carry "/", "..", "%", ":", "?", "#", a space or a newline
# into a URL, and unknown but well-formed ids (newer releases) still pass.
MODEL_ID_MAX_CHARS = 64
_MODEL_ID = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
MODEL_ID_RULE = (
    "lowercase letters and digits joined by single dots, dashes or underscores, "
    f"at most {MODEL_ID_MAX_CHARS} characters, e.g. gemini-3.1-flash-image or gpt-image-2"
)


def is_model_id(value: object) -> bool:
    """Whether ``value`` is shaped like a model id (``MODEL_ID_RULE``), whole string, no trimming."""
    return isinstance(value, str) and len(value) <= MODEL_ID_MAX_CHARS and bool(_MODEL_ID.fullmatch(value))


_BASE_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
_WIDE_RATIOS = (*_BASE_RATIOS, "1:4", "4:1", "1:8", "8:1")

SAFETY_THRESHOLDS = ("BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH", "BLOCK_NONE", "OFF")
SAFETY_CATEGORIES = (
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)


@dataclass(frozen=True)
class GeminiModel:
    id: str
    label: str
    aspect_ratios: tuple[str, ...]
    image_sizes: tuple[str, ...]


GEMINI_MODELS: dict[str, GeminiModel] = {
    m.id: m
    for m in (
        GeminiModel(
            "gemini-3.1-flash-image",
            "Nano Banana 2 (3.1 Flash Image)",
            _WIDE_RATIOS,
            ("512", "1K", "2K", "4K"),
        ),
        GeminiModel("gemini-3-pro-image", "Nano Banana Pro (3 Pro Image)", _BASE_RATIOS, ("1K", "2K", "4K")),
        GeminiModel("gemini-nano-banana-2.1", "Nano Banana 2.1", _WIDE_RATIOS, ("1K", "2K", "4K")),
        GeminiModel(
            "gemini-3.1-flash-lite-image", "Nano Banana 2 Lite (3.1 Flash Lite Image)", _BASE_RATIOS, ("1K",)
        ),
    )
}

DEFAULT_GEMINI_MODEL = "gemini-3.1-flash-image"


def gemini_model(model_id: str) -> GeminiModel:
    """Capabilities of a model; an id we don't know (a newer release) gets the conservative set."""
    return GEMINI_MODELS.get(model_id) or GeminiModel(model_id, model_id, _BASE_RATIOS, ())


# --- OpenAI image models --------------------------------------------------------------------
# Facts from ../shared/reference/openai-images.md (SDK 3.57, Nov 2026). ``gpt-image-1`` and
# ``dall-e-*`` are shut down, so they are not offered; an id we don't know gets the conservative set.

__all__ += [  # appended so the Gemini part above stays untouched
    "DEFAULT_OPENAI_MODEL",
    "OPENAI_BACKGROUNDS",
    "OPENAI_FIXED_SIZES",
    "OPENAI_MODELS",
    "OpenAIModel",
    "openai_model",
]

OPENAI_FIXED_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
OPENAI_BACKGROUNDS = ("transparent", "opaque", "auto")
_OPENAI_QUALITIES = ("low", "medium", "high", "auto")
_OPENAI_QUALITIES_2_5 = ("low", "medium", "high", "xhigh", "max", "auto")
_OPENAI_FORMATS = ("png", "webp", "jpeg")
_MAX_LONG_SIDE, _MAX_SHORT_SIDE, _MAX_RATIO = 3840, 2160, 3


@dataclass(frozen=True)
class OpenAIModel:
    """What one OpenAI image model accepts; an empty ``input_fidelity`` means "never send it"."""

    id: str
    label: str
    qualities: tuple[str, ...]
    arbitrary_size: bool
    input_fidelity: tuple[str, ...]
    output_formats: tuple[str, ...]

    def accepts_size(self, size: str) -> bool:
        """A listed size, or on models with arbitrary sizes a valid ``WIDTHxHEIGHT``.

        Arbitrary sizes: both sides divisible by 16, aspect within 1:3..3:1, at most
        3840x2160 in either orientation.
        """
        if size in OPENAI_FIXED_SIZES:
            return True
        if not self.arbitrary_size:
            return False
        width_s, sep, height_s = size.partition("x")
        if not (sep and width_s.isdigit() and height_s.isdigit()):
            return False
        width, height = int(width_s), int(height_s)
        long_side, short_side = max(width, height), min(width, height)
        return (
            short_side > 0
            and width % 16 == 0
            and height % 16 == 0
            and long_side <= _MAX_LONG_SIDE
            and short_side <= _MAX_SHORT_SIDE
            and long_side <= _MAX_RATIO * short_side
        )


OPENAI_MODELS: dict[str, OpenAIModel] = {
    m.id: m
    for m in (
        OpenAIModel("gpt-image-2", "GPT Image 2", _OPENAI_QUALITIES, True, (), _OPENAI_FORMATS),
        OpenAIModel(
            "gpt-image-2.5-sunburst",
            "GPT Image 2.5 Sunburst",
            _OPENAI_QUALITIES_2_5,
            True,
            (),
            _OPENAI_FORMATS,
        ),
        OpenAIModel(
            "gpt-image-2.5-flare", "GPT Image 2.5 Flare", _OPENAI_QUALITIES_2_5, True, (), _OPENAI_FORMATS
        ),
        OpenAIModel(
            "gpt-image-2.6-sunburst",
            "GPT Image 2.6 Sunburst",
            _OPENAI_QUALITIES_2_5,
            True,
            (),
            _OPENAI_FORMATS,
        ),
        OpenAIModel(
            "gpt-image-2.6-flare", "GPT Image 2.6 Flare", _OPENAI_QUALITIES_2_5, True, (), _OPENAI_FORMATS
        ),
        OpenAIModel(
            "gpt-image-1.5", "GPT Image 1.5", _OPENAI_QUALITIES, False, ("high", "low"), _OPENAI_FORMATS
        ),
        OpenAIModel(
            "gpt-image-1-mini", "GPT Image 1 Mini", _OPENAI_QUALITIES, False, ("low",), _OPENAI_FORMATS
        ),
        OpenAIModel(
            "chatgpt-image-latest", "ChatGPT Image (latest)", _OPENAI_QUALITIES, False, (), _OPENAI_FORMATS
        ),
    )
}

DEFAULT_OPENAI_MODEL = "gpt-image-2"


def openai_model(model_id: str) -> OpenAIModel:
    """Capabilities of an OpenAI model; an unknown id (a newer release) gets the conservative set."""
    return OPENAI_MODELS.get(model_id) or OpenAIModel(
        model_id, model_id, _OPENAI_QUALITIES, False, (), _OPENAI_FORMATS
    )
