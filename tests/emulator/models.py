"""What each emulated image model accepts (reference §1, §2, §8).

Only the four image models that are live in Nov 2026 exist; shut-down ids
(``*-preview``, ``gemini-2.5-flash-image``, the 2.0 experiments) answer 404 like
the real service, so a client pinned to a dead id fails in tests, not in production.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_ASPECT_RATIOS: tuple[str, ...] = (
    "1:1",
    "2:3",
    "3:2",
    "3:4",
    "4:3",
    "4:5",
    "5:4",
    "9:16",
    "16:9",
    "21:9",
)
EXTREME_ASPECT_RATIOS: tuple[str, ...] = ("1:4", "4:1", "1:8", "8:1")
IMAGE_SIZES: tuple[str, ...] = ("512", "1K", "2K", "4K")

#: Side length of a square image at each size tier; other ratios keep the pixel count.
TIER_SIDE: dict[str, int] = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}


@dataclass(frozen=True)
class ModelSpec:
    """Capabilities and billing of one image model."""

    id: str
    image_sizes: tuple[str, ...]
    aspect_ratios: tuple[str, ...]
    output_mime: str
    #: Output image tokens per size tier (reference §8).
    image_tokens: dict[str, int]
    #: Signatures are bound to a model family; a signature from another family does not verify.
    family: str
    #: Pro renders interim "thought images" when thoughts are included.
    thought_images: bool = False


_FLASH_TOKENS = {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}

MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            id="gemini-3-pro-image",
            image_sizes=("1K", "2K", "4K"),
            aspect_ratios=BASE_ASPECT_RATIOS,
            output_mime="image/jpeg",
            image_tokens={"1K": 1120, "2K": 1120, "4K": 2000},
            family="gemini-3-pro-image",
            thought_images=True,
        ),
        ModelSpec(
            id="gemini-3.1-flash-image",
            image_sizes=IMAGE_SIZES,
            aspect_ratios=BASE_ASPECT_RATIOS + EXTREME_ASPECT_RATIOS,
            output_mime="image/png",
            image_tokens=_FLASH_TOKENS,
            family="gemini-3.1-flash-image",
        ),
        ModelSpec(
            id="gemini-3.1-flash-lite-image",
            image_sizes=("1K",),
            aspect_ratios=BASE_ASPECT_RATIOS,
            output_mime="image/png",
            image_tokens=_FLASH_TOKENS,
            family="gemini-3.1-flash-lite-image",
        ),
        ModelSpec(
            id="gemini-nano-banana-2.1",
            image_sizes=("1K", "2K", "4K"),
            aspect_ratios=BASE_ASPECT_RATIOS + EXTREME_ASPECT_RATIOS,
            output_mime="image/png",
            image_tokens=_FLASH_TOKENS,
            family="gemini-nano-banana-2.1",
        ),
    )
}

#: Tokens billed per input image for Gemini 3 models (reference §5).
INPUT_IMAGE_TOKENS = 1120
