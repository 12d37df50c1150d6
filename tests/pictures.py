"""Test images made with Pillow: the one place tests build picture bytes.

Images (to draw on or encode in any format): ``solid``, ``picture``, ``ramp``, ``noise``.
Bytes: ``encode`` any image; ``png``, ``picture_png``, ``hole_png``, ``painted_png`` for the
usual PNGs; ``with_ihdr_size`` forges a header. ``opened`` decodes bytes again.
"""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image, PngImagePlugin

__all__ = [
    "encode",
    "hole_png",
    "noise",
    "opened",
    "painted_png",
    "picture",
    "picture_png",
    "png",
    "ramp",
    "solid",
    "with_ihdr_size",
]

Size = tuple[int, int]
Box = tuple[int, int, int, int]


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    """``image`` saved in ``fmt``; ``params`` go to Pillow's ``save`` (``quality``, ``exif``, ...)."""
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    """Encoded bytes decoded again (pixels loaded)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def solid(color: tuple[int, ...] = (200, 30, 30), size: Size = (32, 24), mode: str = "RGB") -> Image.Image:
    """One colour all over."""
    return Image.new(mode, size, color)


def png(
    color: tuple[int, ...] = (200, 30, 30),
    size: Size = (32, 24),
    *,
    mode: str = "RGB",
    comment: str | None = None,
) -> bytes:
    """A one-colour PNG; ``comment`` adds a text chunk (so any re-encoding changes the bytes)."""
    info = PngImagePlugin.PngInfo()
    if comment:
        info.add_text("Comment", comment)
    return encode(solid(color, size, mode), "PNG", pnginfo=info)


def picture(size: Size = (64, 48), shift: int = 0) -> Image.Image:
    """A picture where (nearly) every pixel differs from its neighbours, so unchanged pixels mean something."""
    grey = Image.linear_gradient("L").resize(size)
    channels = (grey, grey.rotate(90).resize(size), Image.radial_gradient("L").resize(size))
    image = Image.merge("RGB", channels)
    return image.point(lambda v: (v + shift) % 256) if shift else image


def picture_png(size: Size = (64, 48), shift: int = 0) -> bytes:
    return encode(picture(size, shift))


def ramp(size: Size) -> Image.Image:
    """A grey ramp from black at the top to white at the bottom, in RGB."""
    return Image.linear_gradient("L").resize(size).convert("RGB")


def noise(size: Size = (64, 64), mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Incompressible, deterministic pixels, so that cutting or zeroing bytes really damages pixel data."""
    bands = Image.getmodebands(mode)
    return Image.frombytes(mode, size, random.Random(seed).randbytes(size[0] * size[1] * bands))


def hole_png(size: Size, hole: Box, color: tuple[int, ...] = (0, 0, 0, 255)) -> bytes:
    """Opaque ``color`` everywhere except a fully transparent rectangle (left, top, right, bottom; exclusive)."""
    image = Image.new("RGBA", size, color)
    image.paste((0, 0, 0, 0), hole)
    return encode(image)


def painted_png(size: Size, box: Box) -> bytes:
    """What the paint tool sends: black, with the painted rectangle white (greyscale, no alpha)."""
    region = Image.new("L", size, 0)
    region.paste(255, box)
    return encode(region)


def with_ihdr_size(png: bytes, width: int, height: int) -> bytes:
    """The same PNG with its header claiming other dimensions (and a valid CRC): a cheap bomb."""
    assert png[12:16] == b"IHDR"
    chunk = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[33:]
