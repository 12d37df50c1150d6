"""Every kind of bad input, sent through ChatService.send: a clear refusal, or a correct normalisation.

Why: chat/media/images.py is unit-tested file by file, but what a user meets is the whole path: the
service must refuse before it writes anything (no conversation row, no turn, no blob file; a
half-stored message would break replay later), and what it normalises is exactly what is
stored, what the provider is sent, and what a fresh process reads back. Each table row says
what happens to one input; the tests run every row through the real service, storage and blob
store, with a fake provider that answers with a small PNG and records what it was sent.

README's "Faults and bad input: what happens" input table is rendered from these rows (see
``markdown_table``; ``python -m tests.test_bad_input_matrix`` prints it) and
``test_readme_shows_this_table`` keeps the two in step: this file is the source of truth.
"""

from __future__ import annotations

import html
import io
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from pydantic import SecretStr
from sqlalchemy import text

from chat.conversation.service import Attachment, ChatService
from chat.domain import GenerationOptions, ImageData, ImagePart, ProgressSink, ProviderReply, TextPart, Turn
from chat.errors import InputError
from chat.sharing.access import Actor
from chat.ui.render import to_messages, to_transcript
from storage import BlobStore, DiskBlobStore, make_engine, session_scope, sqlite_url
from tests.fakes import last, make_service
from tests.pictures import encode, hole_png, noise, png, with_ihdr_size

OPTIONS = GenerationOptions(model="gemini-3.1-flash-image")
ACTOR = Actor("owner-of-the-bad-input-matrix")
ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TABLES = ("conversation", "turn", "part", "image")
RED, WHITE, BLUE = (255, 0, 0), (255, 255, 255), (0, 0, 255)
HTML = "<script>alert(1)</script><img src=x onerror=alert(2)>"


# --- inputs, each made cheaply with Pillow ------------------------------------------------------


def photo(colour: tuple[int, int, int] = (90, 140, 200)) -> bytes:
    return png(colour, (48, 32))


def corrupt_png() -> bytes:
    data = bytearray(encode(noise(), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 64] = bytes(64)
    return bytes(data)


def corrupt_jpeg() -> bytes:
    data = encode(noise(), "JPEG")
    return data[: len(data) // 2]


def bomb() -> bytes:
    """A tiny PNG whose header (with a valid CRC) claims 100000x100000 pixels."""
    return with_ihdr_size(encode(Image.new("1", (8, 8))), 100_000, 100_000)


def svg() -> bytes:
    return (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
    )


def forty_megapixels() -> bytes:
    return encode(Image.new("RGB", (8000, 5000), (10, 120, 200)), "JPEG", quality=90)


def animated_gif() -> bytes:
    first, second = Image.new("RGB", (16, 12), RED), Image.new("RGB", (16, 12), BLUE)
    return encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (16, 12), (0, 255, 255, 0)), "JPEG")  # CMYK red


def sixteen_bit_png() -> bytes:
    return encode(Image.new("I;16", (16, 12), 32768), "PNG")  # half of 65535


def exif_rotated_jpeg() -> bytes:
    """40x20 pixels as stored, red in the stored top-left corner, EXIF orientation 6.

    Orientation 6 means "rotate 90° clockwise to display": upright it is 20x40, and the stored
    top-left corner ends up at the top right.
    """
    image = Image.new("RGB", (40, 20), WHITE)
    image.paste(RED, (0, 0, 8, 8))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif, quality=95)


def transparent_png() -> bytes:
    return hole_png((16, 12), (0, 0, 8, 12), (*RED, 255))  # left half fully transparent


def files(*named: tuple[str, Callable[[], bytes]]) -> Callable[[], list[Attachment]]:
    return lambda: [Attachment(name, make()) for name, make in named]


# --- the tables ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    id: str
    input: str  # as the README says it
    text: str
    attachments: Callable[[], list[Attachment]]
    says: str  # in the InputError's message: the file's name and what is wrong, or the limit


@dataclass(frozen=True)
class Normalised:
    id: str
    input: str
    outcome: str
    name: str
    upload: Callable[[], bytes]
    mime: str
    mode: str
    size: tuple[int, int]
    pixels: tuple[tuple[tuple[int, int], tuple[int, ...]], ...]  # (x, y) -> colour, within a tolerance
    kept_as_is: bool = False  # stored byte for byte as uploaded


UNREADABLE = "is not an image Retouch can read. Please upload a PNG, JPEG or WebP photo."
TEXT = "make it warmer"

REFUSED: list[Refused] = [
    Refused(
        "not_an_image",
        "a text file renamed `.png`",
        TEXT,
        files(("notes.png", lambda: b"Dear diary,\nToday I renamed a text file.\n")),
        f"\u201cnotes.png\u201d {UNREADABLE}",
    ),
    Refused(
        "corrupt_png",
        "corrupt PNG (zeroed pixel data)",
        TEXT,
        files(("scratched.png", corrupt_png)),
        f"\u201cscratched.png\u201d {UNREADABLE}",
    ),
    Refused(
        "corrupt_jpeg",
        "corrupt JPEG (cut in half)",
        TEXT,
        files(("half.jpg", corrupt_jpeg)),
        f"\u201chalf.jpg\u201d {UNREADABLE}",
    ),
    Refused(
        "bomb",
        "decompression bomb (a 68-byte PNG claiming 100000×100000)",
        TEXT,
        files(("bomb.png", bomb)),
        "\u201cbomb.png\u201d has far too many pixels; the limit is 50.0 megapixels.",
    ),
    Refused(
        "empty_file",
        "0-byte file",
        TEXT,
        files(("holiday.jpg", lambda: b"")),
        "\u201choliday.jpg\u201d is empty (0 bytes).",
    ),
    Refused(
        "too_many_bytes",
        "a 21 MB file",
        TEXT,
        files(("huge.png", lambda: b"\x89PNG" + bytes(21 * 1024 * 1024))),
        "\u201chuge.png\u201d is 21.0 MB; the limit is 20.0 MB.",
    ),
    Refused("svg", "SVG", TEXT, files(("logo.svg", svg)), f"\u201clogo.svg\u201d {UNREADABLE}"),
    Refused(
        "one_bad_of_two",
        "a good photo plus a corrupt one",
        TEXT,
        files(("street.png", photo), ("scratched.png", corrupt_png)),
        f"\u201cscratched.png\u201d {UNREADABLE}",
    ),
    Refused(
        "too_many_images",
        "7 photos in one message",
        TEXT,
        files(*[(f"p{i}.png", photo) for i in range(7)]),
        "You attached 7 images; one message can carry at most 6.",
    ),
    Refused(
        "long_prompt",
        "a 100 kB prompt",
        "x" * 100_000,
        files(),
        "Your message is 100,000 characters; the limit is 8,000.",
    ),
    Refused(
        "nothing",
        "no text and no photo",
        "   ",
        files(),
        "Type what to change, or attach a photo to start from.",
    ),
]

NORMALISED: list[Normalised] = [
    Normalised(
        "forty_megapixels",
        "40-megapixel photo (8000×5000 JPEG)",
        "accepted, scaled down once to 4096×2560 PNG",
        "big.jpg",
        forty_megapixels,
        "image/png",
        "RGB",
        (4096, 2560),
        (((2048, 1280), (10, 120, 200)),),
    ),
    Normalised(
        "animated_gif",
        "animated GIF",
        "first frame, as PNG",
        "wave.gif",
        animated_gif,
        "image/png",
        "RGB",
        (16, 12),
        (((8, 6), RED),),
    ),
    Normalised(
        "cmyk_jpeg",
        "CMYK JPEG",
        "RGB PNG",
        "print.jpg",
        cmyk_jpeg,
        "image/png",
        "RGB",
        (16, 12),
        (((8, 6), RED),),
    ),
    Normalised(
        "sixteen_bit_png",
        "16-bit PNG",
        "8-bit RGB PNG (values ÷ 256)",
        "scan.png",
        sixteen_bit_png,
        "image/png",
        "RGB",
        (16, 12),
        (((8, 6), (128, 128, 128)),),
    ),
    Normalised(
        "exif_rotated",
        "EXIF-rotated JPEG (orientation 6)",
        "upright PNG: sides swapped, corner marker where the viewer showed it",
        "portrait.jpg",
        exif_rotated_jpeg,
        "image/png",
        "RGB",
        (20, 40),
        (((17, 2), RED), ((2, 2), WHITE), ((17, 37), WHITE)),
    ),
    Normalised(
        "transparent_png",
        "transparent PNG",
        "kept byte for byte, alpha intact",
        "cutout.png",
        transparent_png,
        "image/png",
        "RGBA",
        (16, 12),
        (((2, 6), (0, 0, 0, 0)), ((12, 6), (*RED, 255))),
        kept_as_is=True,
    ),
]

HTML_ROW = (
    "HTML/JS in the prompt (`<script>…`, `<img onerror=…>`)",
    "stored verbatim; the chat shows it escaped, as typed (it never runs); the automatic title keeps it as text",
)


# --- the harness --------------------------------------------------------------------------------


class EchoProvider:
    """Answers every turn with a small PNG and records the input images and texts it was sent."""

    name = "gemini"
    configured = True

    def __init__(self) -> None:
        self.calls = 0
        self.images: list[bytes] = []
        self.texts: list[str] = []

    def model_for(self, options: GenerationOptions) -> str:
        return options.model

    def worst_case_cost(self, options: GenerationOptions, *, input_images: int) -> float:
        return 0.0

    async def reply(
        self,
        history: Sequence[Turn],
        options: GenerationOptions,
        load_image: Callable[[ImagePart], bytes],
        *,
        api_key: SecretStr | None = None,
        progress: ProgressSink | None = None,
    ) -> ProviderReply:
        self.calls += 1
        self.images = [load_image(p) for p in history[-1].images()]
        self.texts = [history[-1].text()]
        return ProviderReply(
            provider="gemini",
            model=OPTIONS.model,
            parts=(TextPart("Done."), ImageData(photo((200, 120, 40)), "image/png")),
            finish_reason="STOP",
        )


@dataclass
class Harness:
    data: Path
    service: ChatService
    provider: EchoProvider

    def blobs(self) -> BlobStore:
        return DiskBlobStore(self.data / "images")

    def blob_files(self) -> list[Path]:
        root = self.data / "images"
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    def rows(self) -> dict[str, int]:
        engine = make_engine(sqlite_url(self.data))
        with session_scope(engine, read_only=True) as session:
            return {
                t: session.connection().execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in TABLES
            }

    def fresh_service(self) -> ChatService:
        """What a restarted app sees: a new engine and blob store on the same files."""
        return make_service(self.data, EchoProvider(), engine=make_engine(sqlite_url(self.data)))


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    provider = EchoProvider()
    return Harness(tmp_path, make_service(tmp_path, provider), provider)


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("into", ["new", "existing"])
@pytest.mark.parametrize("row", [pytest.param(r, id=r.id) for r in REFUSED])
async def test_refused_input_says_why_and_writes_nothing(row: Refused, into: str, harness: Harness) -> None:
    conversation_id = None
    if into == "existing":
        first = await last(
            harness.service.send(ACTOR, None, "a street", [Attachment("s.png", photo())], options=OPTIONS)
        )
        conversation_id = first.id
    rows, blobs, calls = harness.rows(), harness.blob_files(), harness.provider.calls

    with pytest.raises(InputError) as caught:
        await last(harness.service.send(ACTOR, conversation_id, row.text, row.attachments(), options=OPTIONS))

    message = caught.value.user_message()
    assert row.says in message, message
    assert "Traceback" not in message and len(message) < 300
    assert harness.rows() == rows  # not a row more: no conversation, turn, part or image
    assert harness.blob_files() == blobs  # not a file more
    assert harness.provider.calls == calls  # nothing was sent
    if into == "new":
        assert rows == dict.fromkeys(TABLES, 0) and blobs == []


# --- normalisations -----------------------------------------------------------------------------


def close_to(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    return len(actual) == len(expected) and all(
        abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)
    )


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id) for r in NORMALISED])
async def test_normalised_upload_is_stored_sent_and_read_back_as_expected(
    row: Normalised, harness: Harness
) -> None:
    upload = row.upload()

    done = await last(
        harness.service.send(ACTOR, None, TEXT, [Attachment(row.name, upload)], options=OPTIONS)
    )

    [part] = done.turns[0].images()
    assert part.mime_type == row.mime
    stored = harness.blobs().read(part.sha256, part.mime_type)
    image = Image.open(io.BytesIO(stored))
    image.load()
    assert (image.format, image.mode, image.size) == ("PNG", row.mode, row.size)
    assert not getattr(image, "is_animated", False)
    for (x, y), colour in row.pixels:
        assert close_to(image.getpixel((x, y)), colour), ((x, y), image.getpixel((x, y)))
    assert (stored == upload) is row.kept_as_is
    assert harness.provider.images == [stored]  # the provider is sent exactly what was stored

    again = await harness.fresh_service().load(ACTOR, done.id)
    assert again == done
    assert harness.fresh_service().image_path(part).read_bytes() == stored
    engine = make_engine(sqlite_url(harness.data))
    with session_scope(engine, read_only=True) as session:
        width, height, size = (
            session.connection()
            .execute(
                text("SELECT width, height, size_bytes FROM image WHERE sha256 = :sha"), {"sha": part.sha256}
            )
            .one()
        )
    assert ((width, height), size) == (row.size, len(stored))


# --- HTML in the prompt -------------------------------------------------------------------------


async def test_html_in_the_prompt_is_kept_as_plain_text_everywhere(harness: Harness) -> None:
    done = await last(harness.service.send(ACTOR, None, HTML, options=OPTIONS))

    user = done.turns[0]
    assert user.text() == HTML and harness.provider.texts == [HTML]
    assert done.title == HTML  # the automatic title keeps it as text (it is under 60 characters)
    [shown] = to_messages(done, harness.service.image_path)[0]["content"]
    assert shown == html.escape(HTML, quote=False)  # one plain string, shown as typed: no live tag of ours
    assert "<" not in shown and html.unescape(shown) == HTML
    assert to_transcript(done)["title"] == HTML and to_transcript(done)["turns"][0]["text"] == HTML
    assert await harness.fresh_service().load(ACTOR, done.id) == done
    for source in (ROOT / "chat" / "ui").glob("*.py"):  # we never turn Gradio's sanitizer off
        assert "sanitize_html=False" not in source.read_text(encoding="utf-8"), source


# --- the README table ---------------------------------------------------------------------------


def markdown_table() -> str:
    """The README table: input, then what happens (refusals quote the start of the message)."""
    lines = ["| input | what happens |", "|---|---|"]
    lines += [f"| {r.input} | refused, nothing stored: {r.says} |" for r in REFUSED]
    lines += [f"| {r.input} | {r.outcome} |" for r in NORMALISED]
    lines.append(f"| {HTML_ROW[0]} | {HTML_ROW[1]} |")
    return "\n".join(lines)


def test_readme_shows_this_table() -> None:
    assert markdown_table() in README.read_text(encoding="utf-8")


if __name__ == "__main__":  # regenerate the README table: python -m tests.test_bad_input_matrix
    sys.stdout.write(markdown_table() + "\n")
