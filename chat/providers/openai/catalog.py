"""What each current OpenAI image model accepts, as data checked before any request.

Facts from ../shared/reference/openai-images.md (SDK 3.57, Nov 2026). ``gpt-image-1`` and
``dall-e-*`` are shut down, so they are not offered; an id we don't know gets the conservative set.

Streaming (``stream`` + ``partial_images`` 0-3, the SDK's ``image_edit_params``): the image
generation guide documents it for the GPT image models of the Images API, so they are marked
as streaming, gpt-image-1.5 too although its model card once said "Streaming: not supported"
(the client falls back to one plain request if a model refuses, and remembers). Nothing
documents it for ``chatgpt-image-latest``, so it is not streamed, nor is an id we don't know.
GIF and SVG output refuse streaming (SDK: "GIF output does not support streaming, partial
images, masks"); no model here offers them, so every format we send can stream.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "OPENAI_BACKGROUNDS",
    "OPENAI_FIXED_SIZES",
    "OPENAI_MAX_N",
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
OPENAI_MAX_N = 10  # images per call: "Must be between 1 and 10" (SDK image_edit_params ``n``)
_MAX_PARTIAL_IMAGES = 3  # ``partial_images``: "Value must be between 0 and 3"


@dataclass(frozen=True)
class OpenAIModel:
    """What one OpenAI image model accepts; an empty ``input_fidelity`` means "never send it";
    ``max_partial_images`` 0 means "never stream"."""

    id: str
    label: str
    qualities: tuple[str, ...]
    arbitrary_size: bool
    input_fidelity: tuple[str, ...]
    output_formats: tuple[str, ...]
    max_partial_images: int = 0
    max_n: int = OPENAI_MAX_N

    @property
    def streams(self) -> bool:
        return self.max_partial_images > 0

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
        OpenAIModel(
            "gpt-image-2", "GPT Image 2", _OPENAI_QUALITIES, True, (), _OPENAI_FORMATS, _MAX_PARTIAL_IMAGES
        ),
        OpenAIModel(
            "gpt-image-2.5-sunburst",
            "GPT Image 2.5 Sunburst",
            _OPENAI_QUALITIES_2_5,
            True,
            (),
            _OPENAI_FORMATS,
            _MAX_PARTIAL_IMAGES,
        ),
        OpenAIModel(
            "gpt-image-2.5-flare",
            "GPT Image 2.5 Flare",
            _OPENAI_QUALITIES_2_5,
            True,
            (),
            _OPENAI_FORMATS,
            _MAX_PARTIAL_IMAGES,
        ),
        OpenAIModel(
            "gpt-image-2.6-sunburst",
            "GPT Image 2.6 Sunburst",
            _OPENAI_QUALITIES_2_5,
            True,
            (),
            _OPENAI_FORMATS,
            _MAX_PARTIAL_IMAGES,
        ),
        OpenAIModel(
            "gpt-image-2.6-flare",
            "GPT Image 2.6 Flare",
            _OPENAI_QUALITIES_2_5,
            True,
            (),
            _OPENAI_FORMATS,
            _MAX_PARTIAL_IMAGES,
        ),
        OpenAIModel(
            "gpt-image-1.5",
            "GPT Image 1.5",
            _OPENAI_QUALITIES,
            False,
            ("high", "low"),
            _OPENAI_FORMATS,
            _MAX_PARTIAL_IMAGES,
        ),
        OpenAIModel(
            "gpt-image-1-mini",
            "GPT Image 1 Mini",
            _OPENAI_QUALITIES,
            False,
            ("low",),
            _OPENAI_FORMATS,
            _MAX_PARTIAL_IMAGES,
        ),
        OpenAIModel(
            "chatgpt-image-latest", "ChatGPT Image (latest)", _OPENAI_QUALITIES, False, (), _OPENAI_FORMATS
        ),
    )
}


def openai_model(model_id: str) -> OpenAIModel:
    """Capabilities of an OpenAI model; an unknown id (a newer release) gets the conservative set."""
    return OPENAI_MODELS.get(model_id) or OpenAIModel(
        model_id, model_id, _OPENAI_QUALITIES, False, (), _OPENAI_FORMATS
    )
