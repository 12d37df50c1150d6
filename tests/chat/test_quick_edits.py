"""Quick edits with Pillow: each kind on real pixels, and every bad input refused with a sentence."""

from __future__ import annotations

import pytest
from PIL import Image, ImageChops

from chat.errors import InputError
from chat.media.images import ImageLimits
from chat.media.quick_edits import QuickEdit, QuickEditKind, apply_quick_edit, parse_quick_edit
from tests.pictures import encode, opened, picture, picture_png, with_ihdr_size

LIMITS = ImageLimits()
ORIENTATION = 0x0112


def edited(data: bytes, edit: dict) -> Image.Image:
    return opened(apply_quick_edit(data, parse_quick_edit(edit), limits=LIMITS).data)


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is None


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"kind": "rotate", "degrees": 90}, lambda im: im.transpose(Image.Transpose.ROTATE_270)),
        ({"kind": "rotate", "degrees": 270}, lambda im: im.transpose(Image.Transpose.ROTATE_90)),
        ({"kind": "rotate", "degrees": 180}, lambda im: im.transpose(Image.Transpose.ROTATE_180)),
        (
            {"kind": "flip", "direction": "horizontal"},
            lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        ),
        ({"kind": "flip", "direction": "vertical"}, lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM)),
        (
            {"kind": "crop", "left": 8, "top": 4, "right": 40, "bottom": 44},
            lambda im: im.crop((8, 4, 40, 44)),
        ),
        (
            {"kind": "crop", "left": 25, "top": 0, "right": 75, "bottom": 50, "unit": "percent"},
            lambda im: im.crop((16, 0, 48, 24)),
        ),
    ],
)
def test_each_lossless_kind_moves_exactly_the_pixels_it_should(edit, expected) -> None:
    assert same(edited(picture_png((64, 48)), edit), expected(picture((64, 48))))


def test_rotating_right_makes_the_top_left_corner_the_top_right_one() -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 4, 4))
    rotated = edited(encode(image), {"kind": "rotate", "degrees": 90})
    assert rotated.size == (20, 40)
    assert rotated.getpixel((19, 0)) == (255, 0, 0) and rotated.getpixel((0, 0)) == (0, 0, 0)


def test_resize_keeps_the_aspect_ratio_when_one_side_is_left_out() -> None:
    assert edited(picture_png((64, 48)), {"kind": "resize", "width": 32}).size == (32, 24)
    assert edited(picture_png((64, 48)), {"kind": "resize", "height": 96}).size == (128, 96)
    assert edited(picture_png((64, 48)), {"kind": "resize", "width": 20, "height": 50}).size == (20, 50)


def test_png_stays_png_and_jpeg_stays_a_good_jpeg() -> None:
    png_out = apply_quick_edit(
        picture_png(), parse_quick_edit({"kind": "flip", "direction": "vertical"}), limits=LIMITS
    )
    assert png_out.mime_type == "image/png" and opened(png_out.data).format == "PNG"
    jpeg = encode(picture((64, 48)), "JPEG", quality=95)
    jpeg_out = apply_quick_edit(jpeg, parse_quick_edit({"kind": "rotate", "degrees": 180}), limits=LIMITS)
    result = opened(jpeg_out.data)
    assert jpeg_out.mime_type == "image/jpeg" and result.format == "JPEG"
    back = result.transpose(Image.Transpose.ROTATE_180)
    worst = max(high for _, high in ImageChops.difference(back, opened(jpeg)).getextrema())
    assert worst < 24  # quality 95, no chroma subsampling: re-encoding loses little
    webp = apply_quick_edit(
        encode(picture(), "WEBP"), parse_quick_edit({"kind": "rotate", "degrees": 90}), limits=LIMITS
    )
    assert webp.mime_type == "image/webp"


def test_an_exif_rotated_jpeg_is_made_upright_before_the_edit_and_loses_its_orientation() -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # shown turned 90° clockwise
    data = encode(picture((64, 48)), "JPEG", quality=95, exif=exif.tobytes())
    result = edited(data, {"kind": "flip", "direction": "horizontal"})
    assert result.size == (48, 64)
    assert result.getexif().get(ORIENTATION, 1) == 1


def test_a_palette_png_with_transparency_resizes_smoothly_and_keeps_its_alpha() -> None:
    image = Image.new("RGBA", (64, 48), (255, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, 32, 48))
    palette = image.quantize(4)
    assert palette.mode == "P" and palette.has_transparency_data
    result = edited(encode(palette), {"kind": "resize", "width": 32})
    assert result.size == (32, 24) and result.mode == "RGBA"
    assert result.getpixel((4, 12))[3] == 0 and result.getpixel((28, 12)) == (255, 0, 0, 255)


def test_describe_says_what_happened() -> None:
    assert parse_quick_edit({"kind": "rotate", "degrees": 270}).describe() == "rotate 90\u00b0 left"
    assert parse_quick_edit({"kind": "flip", "direction": "horizontal"}).describe() == "flip horizontal"
    crop = parse_quick_edit(
        {"kind": "crop", "left": 0, "top": 10, "right": 50.5, "bottom": 100, "unit": "percent"}
    )
    assert crop.describe() == "crop 0,10\u201350.5,100%"
    assert parse_quick_edit({"kind": "resize", "width": 512}).describe() == "resize to 512\u00d7auto"


def test_to_dict_round_trips() -> None:
    for data in (
        {"kind": "crop", "left": 1, "top": 2, "right": 30, "bottom": 40, "unit": "px"},
        {"kind": "rotate", "degrees": 90},
        {"kind": "flip", "direction": "vertical"},
        {"kind": "resize", "width": 100, "height": None},
    ):
        assert parse_quick_edit(parse_quick_edit(data).to_dict()) == parse_quick_edit(data)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (None, "is an object"),
        ([], "is an object"),
        ({"kind": "sharpen"}, "one of crop, rotate, flip or resize"),
        ({"kind": "rotate", "degrees": 45}, "90, 180 or 270"),
        ({"kind": "rotate", "degrees": True}, "90, 180 or 270"),
        ({"kind": "rotate", "degrees": "90"}, "90, 180 or 270"),
        ({"kind": "rotate"}, "90, 180 or 270"),
        ({"kind": "flip", "direction": "diagonal"}, "horizontal"),
        ({"kind": "resize"}, "width, the new height, or both"),
        ({"kind": "resize", "width": 10.5}, "whole number"),
        ({"kind": "resize", "width": -5}, "whole number"),
        ({"kind": "resize", "width": float("nan")}, "whole number"),
        ({"kind": "crop", "left": 0, "top": 0, "right": 10}, "four numbers"),
        ({"kind": "crop", "left": -1, "top": 0, "right": 10, "bottom": 10}, "four numbers"),
        ({"kind": "crop", "left": 0, "top": 0, "right": 10, "bottom": "all"}, "four numbers"),
        ({"kind": "crop", "left": 0, "top": 0, "right": 101, "bottom": 50, "unit": "percent"}, "0 to 100"),
        ({"kind": "crop", "left": 0, "top": 0, "right": 10, "bottom": 10, "unit": "inch"}, "pixels"),
    ],
)
def test_bad_edits_are_refused_with_a_sentence(edit, says) -> None:
    with pytest.raises(InputError, match=says):
        parse_quick_edit(edit)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (
            {"kind": "crop", "left": 0, "top": 0, "right": 65, "bottom": 48},
            "outside the image, which is 64\u00d748",
        ),
        ({"kind": "crop", "left": 0, "top": 0, "right": 64, "bottom": 49}, "outside the image"),
        ({"kind": "crop", "left": 30, "top": 0, "right": 20, "bottom": 48}, "empty or too small"),
        ({"kind": "crop", "left": 10, "top": 10, "right": 10, "bottom": 48}, "empty or too small"),
        ({"kind": "crop", "left": 0, "top": 0, "right": 10, "bottom": 10, "unit": "percent"}, "too small"),
        ({"kind": "resize", "width": 8}, "each side must be 16\u20134096"),
        ({"kind": "resize", "width": 5000}, "each side must be 16\u20134096"),
        ({"kind": "resize", "width": 4096, "height": 16}, None),
    ],
)
def test_edits_that_do_not_fit_the_image_are_refused(edit, says) -> None:
    if says is None:
        assert edited(picture_png((64, 48)), edit).size == (4096, 16)
        return
    with pytest.raises(InputError, match=says):
        edited(picture_png((64, 48)), edit)


def test_a_resize_past_the_pixel_budget_is_refused_before_any_pixel_is_made() -> None:
    small = ImageLimits(max_pixels=100_000)
    edit = QuickEdit(QuickEditKind.RESIZE, width=400, height=400)
    with pytest.raises(InputError, match="0.2 megapixels; the limit is 0.1"):
        apply_quick_edit(picture_png((64, 48)), edit, limits=small)


@pytest.mark.parametrize("side", [8_000, 60_000])  # past our limit; past Pillow's own bomb limit too
def test_a_decompression_bomb_is_refused_before_it_is_decoded(side) -> None:
    bomb = with_ihdr_size(picture_png((64, 48)), side, side)
    with pytest.raises(InputError, match="more .*than a quick edit takes"):
        apply_quick_edit(bomb, QuickEdit(QuickEditKind.ROTATE, degrees=90), limits=LIMITS)


def test_bytes_that_are_no_image_are_refused() -> None:
    with pytest.raises(InputError, match="cannot be read"):
        apply_quick_edit(b"not an image", QuickEdit(QuickEditKind.ROTATE, degrees=90), limits=LIMITS)
