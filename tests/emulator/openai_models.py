"""What each emulated OpenAI image model accepts (openai-images reference, SDK 3.57 docstrings).

Only models that are live in Nov 2026 exist. ``gpt-image-1`` (shut down 2026-10-23),
``dall-e-2`` and ``dall-e-3`` (retired 2026-05-12) and any other id answer 404
``model_not_found`` like the real service, so a client pinned to a dead id fails in
tests, not in production.

Token figures are the emulator's own, documented so tests can assert exact numbers:

- input text: ``ceil(len(prompt) / 4)`` tokens, at least 1;
- input image (each ``image``; the mask is not billed): the GPT-4o vision rule, i.e. fit
  inside 2048x2048, then scale the short side down to 768, then ``85 + 170 * tiles``
  with 512-pixel tiles (765 for a 1024x1024 input);
- output image: the published gpt-image-1 figures for 1024x1024 (low 272, medium 1056,
  high 4160), with xhigh 8320 and max 16640 (2x and 4x high, emulator choice), scaled
  by ``width * height / 1024**2`` and rounded, times ``n``; output text tokens are 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_MODEL = "gpt-image-2"
STANDARD_SIZES: tuple[str, ...] = ("1024x1024", "1024x1536", "1536x1024", "auto")
BASE_QUALITIES: tuple[str, ...] = ("low", "medium", "high", "auto")
EXTRA_QUALITIES: tuple[str, ...] = ("xhigh", "max")
#: What ``quality: auto`` and ``background: auto`` resolve to in the response.
AUTO_QUALITY = "medium"
AUTO_BACKGROUND = "opaque"

SQUARE_OUTPUT_TOKENS: dict[str, int] = {"low": 272, "medium": 1056, "high": 4160, "xhigh": 8320, "max": 16640}


@dataclass(frozen=True)
class ImageModel:
    """Capabilities of one OpenAI image model."""

    id: str
    #: gpt-image-2 / 2.5 / 2.6 take any ``WxH`` within limits, not only the standard sizes.
    arbitrary_sizes: bool
    qualities: tuple[str, ...]
    #: Accepted ``input_fidelity`` values; empty means the parameter itself is rejected.
    input_fidelity: tuple[str, ...]
    #: Whether ``stream=true`` is accepted (not for ``chatgpt-image-latest``: nothing documents it).
    streams: bool = True


def _family(
    ids: tuple[str, ...],
    *,
    arbitrary_sizes: bool,
    qualities: tuple[str, ...],
    input_fidelity: tuple[str, ...],
) -> list[ImageModel]:
    return [ImageModel(model_id, arbitrary_sizes, qualities, input_fidelity) for model_id in ids]


MODELS: dict[str, ImageModel] = {
    spec.id: spec
    for spec in (
        *_family(
            ("gpt-image-2", "gpt-image-2-2026-04-21"),
            arbitrary_sizes=True,
            qualities=BASE_QUALITIES,
            input_fidelity=(),
        ),
        *_family(
            (
                "gpt-image-2.5-sunburst",
                "gpt-image-2.5-sunburst-2026-09-08",
                "gpt-image-2.5-flare",
                "gpt-image-2.5-flare-2026-09-08",
                "gpt-image-2.6-sunburst",
                "gpt-image-2.6-flare",
            ),
            arbitrary_sizes=True,
            qualities=BASE_QUALITIES + EXTRA_QUALITIES,
            input_fidelity=(),
        ),
        ImageModel("chatgpt-image-latest", False, BASE_QUALITIES, (), streams=False),
        ImageModel("gpt-image-1.5", False, BASE_QUALITIES, ("high", "low")),
        ImageModel("gpt-image-1-mini", False, BASE_QUALITIES, ("low",)),
    )
}


def input_image_tokens(size: tuple[int, int]) -> int:
    width, height = size
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


def output_image_tokens(quality: str, size: tuple[int, int]) -> int:
    return round(SQUARE_OUTPUT_TOKENS[quality] * size[0] * size[1] / (1024 * 1024))
