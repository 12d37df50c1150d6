"""Upload validation and normalisation: every test image is generated here with Pillow."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFile

from chat.errors import InputError
from chat.media.images import ImageLimits, image_size, prepare_upload, verify_image
from tests.pictures import encode, noise, opened, with_ihdr_size

LIMITS = ImageLimits()
UNREADABLE = "is not an image Retouch can read. Please upload a PNG, JPEG or WebP photo."
ORIENTATION = 0x0112
RED = (255, 0, 0)


# --- fixture helpers -------------------------------------------------------------------------


def flip_byte(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def close_to(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to decode pixels fails the test loudly."""

    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def refusal(raw: bytes, name: str, limits: ImageLimits = LIMITS) -> str:
    with pytest.raises(InputError) as caught:
        prepare_upload(raw, name=name, limits=limits)
    message = str(caught.value)
    assert f"\u201c{name}\u201d" in message
    assert caught.value.user_message() == message
    return message


# --- refused uploads -----------------------------------------------------------------------


def test_empty_file_is_refused_and_asks_for_the_photo_again() -> None:
    message = refusal(b"", "holiday.png")
    assert "empty (0 bytes)" in message
    assert "Please upload the photo again." in message


def test_text_file_renamed_to_png_is_refused_as_unreadable() -> None:
    message = refusal(b"Dear diary,\nToday I renamed a text file.\n", "notes.png")
    assert UNREADABLE in message


def test_svg_is_refused_and_the_message_lists_the_accepted_formats() -> None:
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
    )
    assert UNREADABLE in refusal(svg, "logo.svg")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", ["header only", "half", "all but the last 100 bytes"])
def test_truncated_file_with_a_valid_header_is_refused_as_unreadable(fmt: str, keep: str) -> None:
    data = encode(noise(), fmt)
    cut = {"header only": 40, "half": len(data) // 2, "all but the last 100 bytes": len(data) - 100}[keep]
    assert UNREADABLE in refusal(data[:cut], f"photo.{fmt.lower()}")


def test_png_with_corrupt_pixel_data_is_refused_as_unreadable() -> None:
    data = bytearray(encode(noise(), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 64] = bytes(64)
    assert UNREADABLE in refusal(bytes(data), "scratched.png")


def test_file_over_the_byte_limit_is_refused_before_it_is_decoded(no_pixel_decoding: None) -> None:
    message = refusal(b"\x89PNG" + bytes(2044), "huge.png", ImageLimits(max_bytes=1024))
    assert message == "\u201chuge.png\u201d is 2 kB; the limit is 1 kB. Please upload a smaller file."


def test_file_exactly_at_the_byte_limit_is_accepted() -> None:
    data = encode(Image.new("RGB", (8, 8), RED), "PNG")
    assert prepare_upload(data, name="ok.png", limits=ImageLimits(max_bytes=len(data))).data == data


def test_image_over_the_megapixel_limit_is_refused_with_its_dimensions() -> None:
    data = encode(Image.new("RGB", (3000, 1000)), "PNG")
    message = refusal(data, "wide.png", ImageLimits(max_pixels=2_000_000))
    assert message == (
        "\u201cwide.png\u201d is 3000\u00d71000 (3.0 megapixels); the limit is 2.0 megapixels. "
        "Please upload a smaller image."
    )


def test_megapixel_message_shows_a_tenth_so_an_image_just_over_the_limit_reads_as_over() -> None:
    data = encode(Image.new("L", (1100, 1000)), "PNG")
    message = refusal(data, "edge.png", ImageLimits(max_pixels=1_000_000))
    assert "is 1100\u00d71000 (1.1 megapixels); the limit is 1.0 megapixels." in message


def test_image_exactly_at_the_megapixel_limit_is_accepted() -> None:
    data = encode(Image.new("L", (100, 100)), "PNG")
    assert prepare_upload(data, name="ok.png", limits=ImageLimits(max_pixels=10_000)).width == 100


def test_decompression_bomb_is_refused_from_its_header_without_decoding_pixels(
    no_pixel_decoding: None,
) -> None:
    bomb = with_ihdr_size(encode(Image.new("1", (8, 8)), "PNG"), 100_000, 100_000)
    assert len(bomb) < 200
    message = refusal(bomb, "bomb.png")
    assert "too many pixels" in message
    assert "the limit is 50.0 megapixels. Please upload a smaller image." in message


def test_image_between_pillows_warning_and_error_thresholds_gets_the_size_message(
    no_pixel_decoding: None,
) -> None:
    # 100 megapixels: above Pillow's DecompressionBombWarning threshold, below its hard error.
    big = with_ihdr_size(encode(Image.new("1", (8, 8)), "PNG"), 10_000, 10_000)
    assert "10000\u00d710000 (100.0 megapixels)" in refusal(big, "big.png")


def test_header_claiming_zero_pixels_is_refused_as_unreadable() -> None:
    data = with_ihdr_size(encode(Image.new("RGB", (8, 8)), "PNG"), 0, 0)
    assert UNREADABLE in refusal(data, "zero.png")


# --- kept byte for byte ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime", "params"),
    [
        ("PNG", "image/png", {}),
        ("JPEG", "image/jpeg", {"quality": 90}),
        ("WEBP", "image/webp", {"lossless": True}),
        ("WEBP", "image/webp", {"quality": 80}),
    ],
)
def test_fine_png_jpeg_and_webp_are_kept_byte_identical(fmt: str, mime: str, params: dict) -> None:
    data = encode(noise((40, 30)), fmt, **params)
    prepared = prepare_upload(data, name="photo", limits=LIMITS)
    assert prepared.data == data
    assert (prepared.mime_type, prepared.width, prepared.height) == (mime, 40, 30)


def test_format_comes_from_the_content_not_the_file_name() -> None:
    data = encode(Image.new("RGB", (10, 10), RED), "PNG")
    prepared = prepare_upload(data, name="actually-a-png.jpg", limits=LIMITS)
    assert (prepared.data, prepared.mime_type) == (data, "image/png")


def test_jpeg_with_upright_exif_orientation_is_kept_byte_identical() -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 1
    data = encode(noise((40, 20)), "JPEG", exif=exif.tobytes())
    assert prepare_upload(data, name="upright.jpg", limits=LIMITS).data == data


def test_grayscale_png_is_kept_byte_identical() -> None:
    data = encode(Image.linear_gradient("L").resize((32, 16)), "PNG")
    assert prepare_upload(data, name="grey.png", limits=LIMITS).data == data


def test_transparent_png_is_kept_byte_identical_with_its_alpha() -> None:
    image = Image.new("RGBA", (20, 10), (*RED, 255))
    image.putpixel((3, 4), (0, 0, 0, 0))
    data = encode(image, "PNG")
    prepared = prepare_upload(data, name="cutout.png", limits=LIMITS)
    assert prepared.data == data
    assert opened(prepared.data).convert("RGBA").getpixel((3, 4))[3] == 0


def test_palette_png_with_transparency_is_kept_byte_identical_with_its_alpha() -> None:
    image = Image.new("P", (20, 10), 1)
    image.putpalette([0, 0, 0, *RED])
    image.putpixel((3, 4), 0)
    data = encode(image, "PNG", transparency=0)
    prepared = prepare_upload(data, name="sticker.png", limits=LIMITS)
    assert prepared.data == data
    rgba = opened(prepared.data).convert("RGBA")
    assert rgba.getpixel((3, 4))[3] == 0
    assert rgba.getpixel((0, 0)) == (*RED, 255)


# --- normalised to a PNG master ------------------------------------------------------------


def test_exif_rotated_jpeg_comes_out_upright() -> None:
    stored = Image.new("RGB", (60, 30), (255, 255, 255))
    stored.paste(RED, (0, 0, 12, 12))  # marker in the stored top-left corner
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # "rotate 90° clockwise to display"
    data = encode(stored, "JPEG", exif=exif.tobytes(), quality=95)

    prepared = prepare_upload(data, name="phone.jpg", limits=LIMITS)

    assert (prepared.mime_type, prepared.width, prepared.height) == ("image/png", 30, 60)
    upright = opened(prepared.data)
    assert upright.size == (30, 60)
    assert upright.getexif().get(ORIENTATION, 1) == 1
    assert close_to(upright.getpixel((30 - 6, 6)), RED)  # the marker is now top-right
    assert close_to(upright.getpixel((6, 6)), (255, 255, 255))
    assert close_to(upright.getpixel((30 - 6, 60 - 6)), (255, 255, 255))


def test_animated_gif_becomes_a_png_of_its_first_frame() -> None:
    frames = [Image.new("RGB", (16, 12), colour) for colour in (RED, (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3

    prepared = prepare_upload(data, name="loop.gif", limits=LIMITS)

    assert (prepared.mime_type, prepared.width, prepared.height) == ("image/png", 16, 12)
    first = opened(prepared.data)
    assert first.format == "PNG"
    assert getattr(first, "n_frames", 1) == 1
    assert first.convert("RGB").getpixel((8, 6)) == RED


def test_cmyk_jpeg_becomes_an_rgb_png() -> None:
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"

    prepared = prepare_upload(data, name="print.jpg", limits=LIMITS)

    assert prepared.mime_type == "image/png"
    rgb = opened(prepared.data)
    assert rgb.mode == "RGB"
    assert close_to(rgb.getpixel((8, 8)), RED)


def test_16_bit_png_becomes_8_bit_keeping_its_tones() -> None:
    deep = Image.new("I;16", (256, 1))
    for x in range(256):
        deep.putpixel((x, 0), x * 257)
    data = encode(deep, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"

    prepared = prepare_upload(data, name="scan.png", limits=LIMITS)

    assert (prepared.mime_type, prepared.width, prepared.height) == ("image/png", 256, 1)
    out = opened(prepared.data)
    assert out.mode in {"L", "RGB"}
    grey = out.convert("L")
    assert [grey.getpixel((x, 0)) for x in (0, 1, 128, 255)] == [0, 1, 128, 255]


@pytest.mark.parametrize(("size", "expected"), [((400, 100), (100, 25)), ((60, 300), (20, 100))])
def test_long_side_over_max_side_is_downscaled_keeping_aspect_ratio(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    data = encode(Image.new("RGB", size, RED), "PNG")

    prepared = prepare_upload(data, name="big.png", limits=ImageLimits(max_side=100))

    assert (prepared.mime_type, prepared.width, prepared.height) == ("image/png", *expected)
    out = opened(prepared.data)
    assert out.size == expected
    assert out.convert("RGB").getpixel((expected[0] // 2, expected[1] // 2)) == RED


def test_long_side_exactly_at_max_side_is_not_resized() -> None:
    data = encode(Image.new("RGB", (100, 40), RED), "JPEG")
    assert prepare_upload(data, name="fits.jpg", limits=ImageLimits(max_side=100)).data == data


def test_downscaled_transparent_png_keeps_its_alpha() -> None:
    image = Image.new("RGBA", (200, 100), (*RED, 255))
    image.paste((0, 0, 0, 0), (0, 0, 100, 100))  # left half fully transparent
    prepared = prepare_upload(encode(image, "PNG"), name="cutout.png", limits=ImageLimits(max_side=50))
    out = opened(prepared.data)
    assert (out.mode, out.size) == ("RGBA", (50, 25))
    assert out.getpixel((5, 12))[3] == 0
    assert out.getpixel((45, 12)) == (*RED, 255)


def test_downscaled_palette_png_with_transparency_keeps_its_alpha() -> None:
    image = Image.new("P", (200, 100), 1)
    image.putpalette([0, 0, 0, *RED])
    image.paste(0, (0, 0, 100, 100))
    data = encode(image, "PNG", transparency=0)
    prepared = prepare_upload(data, name="sticker.png", limits=ImageLimits(max_side=50))
    out = opened(prepared.data)
    assert (out.mode, out.size) == ("RGBA", (50, 25))
    assert out.getpixel((5, 12))[3] == 0
    assert out.getpixel((45, 12)) == (*RED, 255)


def test_exif_rotated_jpeg_over_max_side_is_rotated_then_downscaled() -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    data = encode(Image.new("RGB", (400, 200), RED), "JPEG", exif=exif.tobytes())
    prepared = prepare_upload(data, name="phone.jpg", limits=ImageLimits(max_side=100))
    assert (prepared.width, prepared.height) == (50, 100)


# --- image_size ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_image_size_reads_width_and_height(fmt: str) -> None:
    assert image_size(encode(Image.new("RGB", (37, 21), RED), fmt)) == (37, 21)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>rate limited</html>", id="text"),
        pytest.param(encode(noise(), "PNG")[:2000], id="truncated png"),
        pytest.param(encode(noise(), "JPEG")[:500], id="truncated jpeg"),
        pytest.param(with_ihdr_size(encode(Image.new("1", (8, 8)), "PNG"), 100_000, 100_000), id="bomb"),
        pytest.param(flip_byte(encode(noise(), "PNG"), 5000), id="png with a flipped bit in its pixel data"),
        pytest.param(encode(noise(), "PNG")[:-12], id="png without IEND"),
        pytest.param(encode(noise(), "WEBP")[:1500], id="truncated webp"),
    ],
)
def test_verify_image_raises_value_error_for_bytes_that_do_not_decode(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a decodable image"):
        verify_image(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_verify_image_accepts_whole_images_and_returns_their_size(fmt: str) -> None:
    assert verify_image(encode(noise((37, 21)), fmt)) == (37, 21)


def test_verify_image_checks_a_png_without_decoding_its_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PNG is checked by its chunk CRCs (~1 ms for a 1K answer); decoding it would cost ~35 ms per turn."""

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("decoded the pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert verify_image(encode(noise(), "PNG")) == (64, 64)
    with pytest.raises(AssertionError, match="decoded the pixels"):
        verify_image(encode(noise(), "JPEG"))  # no checksums: decoded
