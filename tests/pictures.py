"""Test images made with Pillow: encoded in a given format, and pixels that do not compress."""

from __future__ import annotations

import io
import random

from PIL import Image

__all__ = ["encode", "noise"]


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def noise(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """Incompressible, deterministic pixels, so that cutting or zeroing bytes really damages pixel data."""
    return Image.frombytes("RGB", size, random.Random(0).randbytes(size[0] * size[1] * 3))
