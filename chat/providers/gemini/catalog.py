"""What each current Gemini image model accepts, as data checked before any request.

Facts from ../shared/reference/gemini-api.md §1-§2 (Nov 2026). The 2.0, 2.5 and every
``*-preview`` image model are shut down; ids are configurable because they keep moving.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "GEMINI_MODELS",
    "SAFETY_CATEGORIES",
    "SAFETY_THRESHOLDS",
    "GeminiModel",
    "gemini_model",
]

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


def gemini_model(model_id: str) -> GeminiModel:
    """Capabilities of a model; an id we don't know (a newer release) gets the conservative set."""
    return GEMINI_MODELS.get(model_id) or GeminiModel(model_id, model_id, _BASE_RATIOS, ())
