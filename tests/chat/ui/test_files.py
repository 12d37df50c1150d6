"""Files the page offers: thumbnails are small copies, made once per image."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from PIL import Image

from chat.domain import ImagePart
from chat.ui.files import THUMBNAIL_SIDE, FileMaker
from tests.pictures import encode, png


@pytest.fixture
def masters(tmp_path: Path) -> Path:
    folder = tmp_path / "masters"
    folder.mkdir()
    return folder


def stored(masters: Path, data: bytes, mime_type: str = "image/png") -> ImagePart:
    sha = hashlib.sha256(data).hexdigest()
    (masters / sha).write_bytes(data)
    return ImagePart(sha, mime_type)


def maker(masters: Path, tmp_path: Path) -> FileMaker:
    return FileMaker(lambda part: masters / part.sha256, tmp_path / "files")


@pytest.mark.parametrize(("mode", "fmt"), [("RGB", "PNG"), ("RGBA", "PNG"), ("P", "GIF"), ("RGB", "JPEG")])
def test_a_thumbnail_is_a_small_webp_of_the_image(masters: Path, tmp_path: Path, mode: str, fmt: str) -> None:
    part = stored(masters, encode(Image.new(mode, (1600, 900), 1 if mode == "P" else "red"), fmt))

    path = Path(maker(masters, tmp_path).thumbnail(part))

    with Image.open(path) as thumbnail:
        assert thumbnail.format == "WEBP" and max(thumbnail.size) == THUMBNAIL_SIDE
        assert thumbnail.size == (256, 144)  # the image's proportions
    assert path.stat().st_size < 20_000
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def test_a_thumbnail_is_made_once_and_reused(masters: Path, tmp_path: Path) -> None:
    files = maker(masters, tmp_path)
    part = stored(masters, png((1, 2, 3), (600, 400)))
    first = Path(files.thumbnail(part))
    os.utime(first, (0, 0))

    assert Path(files.thumbnail(part)) == first
    assert first.stat().st_mtime > 0  # in use again: not swept for another hour


def test_no_image_is_the_placeholder(masters: Path, tmp_path: Path) -> None:
    assert Path(maker(masters, tmp_path).thumbnail(None)).name == "no-image.png"
