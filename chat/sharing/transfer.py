"""Export a conversation as a self-contained ZIP file and read one back.

Why: a user can keep a conversation outside Retouch, move it to another installation and
continue it there. Continuing means replaying, so the export keeps everything a provider
needs echoed back (``provider_metadata`` verbatim: Gemini's ``thoughtSignature`` and
``thought`` flags, Retouch's mask/marked image roles), in order, and every image byte for byte.

Deliberately NOT exported: a turn's ``options`` (the owner's settings), the conversation id
and any owner id. An export is meant to be handed to someone else; who made it and how their
panel was set is none of the reader's business, and ids belong to the database that made them.

The ZIP holds ``transcript.json`` (format ``retouch-conversation``, version 1), ``images/
<sha256>.<ext>`` (each distinct image once, stored uncompressed: images are compressed already)
and a short ``README.txt``.

An import is untrusted input (on a public demo, from anyone): it is checked before anything is
trusted (entry count, declared and actual sizes, entry names, JSON shape, image hashes and pixel
counts, that images decode) and every problem becomes an ``InputError`` with a sentence the user
can act on. ``ImportLimits`` bounds the work one import can cause: its turns, parts, texts and
metadata, and how much JSON is parsed at all. Of ``provider_metadata`` only the allow-listed
keys are kept (``chat.domain.KNOWN_METADATA``): a key named after a part's data would otherwise
be replayed to the provider in its place. This module is pure (bytes in, values out); storing
what was imported is the caller's job.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from chat.config import DEFAULTS
from chat.domain import (
    MAX_VARIANTS,
    Conversation,
    ImagePart,
    ImageRole,
    Role,
    TextPart,
    Turn,
    aware_utc,
    extension_for,
    known_metadata,
)
from chat.errors import InputError
from chat.media.images import describe_size, image_size, verify_image
from chat.text import one_line
from storage.blobs import validate_sha256
from storage.models import (
    ERROR_KIND_MAX_LENGTH,
    FINISH_REASON_MAX_LENGTH,
    MIME_TYPE_MAX_LENGTH,
    MODEL_MAX_LENGTH,
    PROVIDER_MAX_LENGTH,
    TITLE_MAX_LENGTH,
)

__all__ = [
    "FORMAT",
    "VERSION",
    "ImportLimits",
    "ImportedConversation",
    "export_zip",
    "import_zip",
]

FORMAT = "retouch-conversation"
VERSION = 2
READABLE_VERSIONS = (1, 2)
DEFAULT_TITLE = "Imported conversation"

TRANSCRIPT = "transcript.json"
README = "README.txt"
IMAGE_DIR = "images"
ALLOWED_MIME_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})

_README_TEXT = """\
Retouch conversation export

transcript.json  The conversation: every turn's text in order, which images each turn
                 used or produced, which provider and model answered, errors and the
                 attempts made, and of several answers made at once (variants) which
                 is which and which one the next edit builds on ("picked")
                 (format "retouch-conversation", version 1).
images/          Every image of the conversation once, byte for byte as Retouch stored
                 it, named <sha256>.<ext> after the SHA-256 hash of its bytes.

Import this file in Retouch to continue the conversation there.
Not included: your settings, account and the conversation's id.
"""

_FILE_PERMISSIONS = 0o644 << 16
_EARLIEST_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_DRIVE = re.compile(r"^[A-Za-z]:")
_EXPORT_AGAIN = "Export the conversation from Retouch again and import the new file."


@dataclass(frozen=True)
class ImportLimits:
    """How much one import may hold, so no file can keep the server busy or swell its memory.

    Each bound is far above what a conversation made in Retouch reaches, so a real export imports.
    """

    max_bytes: int = 200 * 1024 * 1024  # everything unpacked: transcript and images
    max_files: int = 2000
    # json.loads holds the GIL for the whole parse, so every other request waits for it: ~0.6 µs a
    # value in the worst shapes (deep nesting; measured), so 500,000 keep that under ~0.3 s. Values
    # are counted before parsing (the , : [ { characters); long strings are cheap, bytes bound them.
    max_transcript_bytes: int = 32 * 1024 * 1024
    max_json_values: int = 500_000
    # A turn is a user message or an answer: a whole day of edits at the default rate limit (300)
    # makes 600.
    max_turns: int = 1000
    # A message: its text, up to 6 photos, a mask and a marked copy; an answer: thoughts, up to two
    # interim images, its text and image(s).
    max_parts: int = 16
    # A user turn's text is a message: RETOUCH_MAX_PROMPT_CHARS applies as when it was typed. An
    # answer's text (its thoughts included) was written by the model: up to the most output tokens
    # the options allow (65,536) at ~4 characters a token.
    max_prompt_chars: int = DEFAULTS.max_prompt_chars
    max_answer_chars: int = 262_144
    # Per part, the allow-listed provider_metadata (a thought signature is reported at 1-2 MB).
    max_metadata_chars: int = 4 * 1024 * 1024
    # Per turn, everything but its parts: usage, attempts, error, provider and model names.
    max_details_chars: int = 16 * 1024
    max_pixels: int = DEFAULTS.max_upload_pixels  # per image, as for uploads
    # Image parts in the whole conversation. Showing one costs the event loop ~1.5 ms (Gradio copies
    # it into its cache), and a zip within the upload limit (20 MB) holds far fewer real images.
    max_images: int = 200


@dataclass(frozen=True)
class ImportedConversation:
    """What an export contained; ``images`` maps sha256 to (bytes, mime type)."""

    title: str
    turns: tuple[Turn, ...]
    images: dict[str, tuple[bytes, str]]


# --- export ------------------------------------------------------------------------------------


def export_zip(
    conversation: Conversation, read_image: Callable[[ImagePart], bytes], *, exported_at: datetime
) -> bytes:
    """The conversation as a ZIP; ``read_image`` returns an image's stored bytes.

    The output depends only on the arguments (entry order and timestamps are fixed), so the
    same conversation exported at the same instant gives the same bytes.
    """
    date_time = _zip_time(exported_at)
    transcript = _transcript(conversation, exported_at)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        _write(archive, README, _README_TEXT.encode(), date_time, zipfile.ZIP_DEFLATED)
        _write(archive, TRANSCRIPT, _json_bytes(transcript), date_time, zipfile.ZIP_DEFLATED)
        for name, part in _distinct_images(conversation.turns).items():
            _write(archive, name, read_image(part), date_time, zipfile.ZIP_STORED)
    return out.getvalue()


def _transcript(conversation: Conversation, exported_at: datetime) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "title": conversation.title,
        "exported_at": _iso(exported_at),
        "turns": [_turn_json(turn) for turn in conversation.turns],
    }


def _turn_json(turn: Turn) -> dict[str, Any]:
    """``Turn.to_dict`` with each image's file in the ZIP beside its hash."""
    data = turn.to_dict()
    data["parts"] = [
        part.to_dict() | ({"file": _image_name(part)} if isinstance(part, ImagePart) else {})
        for part in turn.parts
    ]
    return data


def _image_name(part: ImagePart) -> str:
    return f"{IMAGE_DIR}/{part.sha256}.{extension_for(part.mime_type)}"


def _distinct_images(turns: Iterable[Turn]) -> dict[str, ImagePart]:
    """Each image file once, in order of first use."""
    images: dict[str, ImagePart] = {}
    for turn in turns:
        for part in turn.images():
            images.setdefault(_image_name(part), part)
    return images


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2).encode()


def _iso(value: datetime) -> str:
    return aware_utc(value).isoformat()


def _zip_time(value: datetime) -> tuple[int, int, int, int, int, int]:
    """Entry timestamps: the export instant in UTC (ZIP cannot say anything before 1980)."""
    utc = aware_utc(value)
    return max(_EARLIEST_ZIP_TIME, (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second))


def _write(
    archive: zipfile.ZipFile,
    name: str,
    data: bytes,
    date_time: tuple[int, int, int, int, int, int],
    compression: int,
) -> None:
    info = zipfile.ZipInfo(name, date_time=date_time)
    info.compress_type = compression
    info.external_attr = _FILE_PERMISSIONS
    archive.writestr(info, data)


# --- import ------------------------------------------------------------------------------------


def import_zip(data: bytes, *, limits: ImportLimits | None = None) -> ImportedConversation:
    """Read an export made by ``export_zip``; InputError with a sentence for the user if unusable.

    Turns come back with ``options`` empty, only allow-listed ``provider_metadata``, no cost (what
    the conversation cost was spent elsewhere), and image parts referring to sha256 hashes whose
    bytes (checked against the hash, and that they decode) are in ``images``.
    """
    limits = limits or ImportLimits()
    with _open_zip(data) as archive:
        entries = _checked_entries(archive.infolist(), max_bytes=limits.max_bytes, max_files=limits.max_files)
        reader = _EntryReader(archive, entries, budget=limits.max_bytes)
        raw = _load_transcript(reader, limits)
        raw_turns = raw.get("turns")
        if isinstance(raw_turns, list) and len(raw_turns) > limits.max_turns:
            raise InputError(
                f"This conversation has {len(raw_turns):,} turns; Retouch imports at most "
                f"{limits.max_turns:,}. Import a shorter conversation."
            )
        transcript = _validated(_upgraded(raw) if raw["version"] == 1 else raw)
        images = _ImageLoader(reader, max_pixels=limits.max_pixels, max_images=limits.max_images)
        turns = tuple(
            _turn(turn, raw_turn, f"turn {n}", images, limits)
            for n, (turn, raw_turn) in enumerate(zip(transcript.turns, _raw_turns(raw), strict=True), start=1)
        )
    return ImportedConversation(title=_title(transcript.title), turns=turns, images=images.loaded)


def _open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise InputError(
            "This file is not a ZIP file, so it is not a Retouch conversation export. "
            "Choose the .zip file Retouch saved when you exported the conversation."
        ) from exc


def _checked_entries(
    infos: list[zipfile.ZipInfo], *, max_bytes: int, max_files: int
) -> dict[str, zipfile.ZipInfo]:
    """Refuse the whole file on too many entries, unsafe or repeated names, or too much content."""
    if len(infos) > max_files:
        raise InputError(
            f"This file contains {len(infos)} files; the limit is {max_files}. "
            "Import a smaller conversation or split it up."
        )
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if _unsafe_name(info.filename):
            raise InputError(
                f"This file contains an unsafe path (\u201c{info.filename}\u201d), so Retouch refused to import it. "
                "Only import conversations exported from Retouch."
            )
        if info.filename in entries:
            raise InputError(
                f"This file contains \u201c{info.filename}\u201d twice, so Retouch refused to import it. "
                + _EXPORT_AGAIN
            )
        entries[info.filename] = info
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise _too_large(total, max_bytes)
    return entries


def _unsafe_name(name: str) -> bool:
    """Absolute (POSIX, Windows, drive letter) or climbing out with ``..``."""
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return True
    return ".." in re.split(r"[/\\]", name)


def _too_large(size: int, max_bytes: int) -> InputError:
    return InputError(
        f"This file unpacks to {describe_size(size)}; the limit is {describe_size(max_bytes)}. "
        "Import a smaller conversation."
    )


class _EntryReader:
    """Reads entries by name, counting what was really decompressed against the byte budget."""

    def __init__(self, archive: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo], *, budget: int) -> None:
        self._archive = archive
        self._entries = entries
        self._budget = budget
        self._used = 0

    def has(self, name: str) -> bool:
        return name in self._entries

    def size(self, name: str) -> int:
        """The entry's declared size; reading never gives more (zipfile stops there)."""
        return self._entries[name].file_size

    def read(self, name: str) -> bytes:
        remaining = self._budget - self._used
        try:
            with self._archive.open(self._entries[name]) as entry:
                data = entry.read(remaining + 1)
        except RuntimeError as exc:  # encrypted entry and no password
            raise InputError(
                "This file is password-protected; Retouch exports never are. " + _EXPORT_AGAIN
            ) from exc
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError) as exc:
            raise InputError(
                f"This ZIP file is damaged (\u201c{name}\u201d cannot be read). " + _EXPORT_AGAIN
            ) from exc
        if len(data) > remaining:
            raise _too_large(self._used + len(data), self._budget)
        self._used += len(data)
        return data


def _load_transcript(reader: _EntryReader, limits: ImportLimits) -> dict[str, Any]:
    if not reader.has(TRANSCRIPT):
        raise InputError(
            f"This ZIP file has no {TRANSCRIPT}, so it is not a Retouch conversation export. "
            "Choose the .zip file Retouch saved when you exported the conversation."
        )
    if (size := reader.size(TRANSCRIPT)) > limits.max_transcript_bytes:
        raise InputError(
            f"The transcript in this file is {describe_size(size)}; the limit is "
            f"{describe_size(limits.max_transcript_bytes)}. Import a smaller conversation."
        )
    raw = reader.read(TRANSCRIPT)
    if (values := _json_values(raw)) > limits.max_json_values:
        raise InputError(
            f"The transcript in this file holds {values:,} values; the limit is {limits.max_json_values:,}. "
            "Import a smaller conversation."
        )
    try:
        transcript = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InputError(
            f"{TRANSCRIPT} in this file is not valid JSON; it was damaged or edited. " + _EXPORT_AGAIN
        ) from exc
    if not isinstance(transcript, dict) or transcript.get("format") != FORMAT:
        raise InputError(
            f"This ZIP file is not a Retouch conversation export ({TRANSCRIPT} does not say "
            f"\u201c{FORMAT}\u201d). Choose a file exported from Retouch."
        )
    version = transcript.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise InputError(
            f"This export has format version {version!r}, which this Retouch cannot read "
            f"(it reads versions 1 and {VERSION}). Export it again with this version of Retouch."
        )
    return transcript


def _json_values(raw: bytes) -> int:
    """At least how many values JSON ``raw`` holds, counted without parsing (inside strings too)."""
    return sum(raw.count(mark) for mark in (b",", b":", b"[", b"{"))


def _title(title: str | None) -> str:
    line = one_line(title or "")
    return line[:TITLE_MAX_LENGTH].rstrip() or DEFAULT_TITLE


class _ImageLoader:
    """Reads each referenced image file once and checks it: hash, type, that it decodes."""

    def __init__(self, reader: _EntryReader, *, max_pixels: int, max_images: int) -> None:
        self._reader = reader
        self._max_pixels = max_pixels
        self._max_images = max_images
        self._used = 0  # image parts so far, the same file counted each time it is used
        self._checked: dict[str, str] = {}  # file name -> sha256 it was verified against
        self.loaded: dict[str, tuple[bytes, str]] = {}

    def load(self, file: str, sha256: str, mime_type: str, where: str) -> None:
        self._used += 1
        if self._used > self._max_images:
            raise InputError(
                f"This conversation has more than {self._max_images:,} images; Retouch imports at most "
                f"{self._max_images:,}. Import a shorter conversation."
            )
        if self._checked.get(file) == sha256:
            return
        if not self._reader.has(file):
            raise _invalid(where, f"the image file \u201c{file}\u201d is missing from the ZIP")
        data = self._reader.read(file)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise InputError(
                f"The image \u201c{file}\u201d does not match its recorded SHA-256 hash; "
                "the file was damaged or edited. " + _EXPORT_AGAIN
            )
        unreadable = InputError(f"The image \u201c{file}\u201d cannot be read as an image. " + _EXPORT_AGAIN)
        try:
            width, height = image_size(data)  # the header only: a pixel bomb is refused before decoding
        except ValueError as exc:
            raise unreadable from exc
        if width * height > self._max_pixels:
            raise InputError(
                f"The image \u201c{file}\u201d has {width * height:,} pixels; the limit is "
                f"{self._max_pixels:,}. Import a conversation with smaller images."
            )
        try:
            verify_image(data)
        except ValueError as exc:
            raise unreadable from exc
        self._checked[file] = sha256
        self.loaded.setdefault(sha256, (data, mime_type))


def _turn(
    turn: _TurnIn, raw: Mapping[str, Any], where: str, images: _ImageLoader, limits: ImportLimits
) -> Turn:
    """One validated turn within the limits, its images loaded and checked."""
    if len(turn.parts) > limits.max_parts:
        raise _invalid(where, f"{len(turn.parts)} parts; a turn has at most {limits.max_parts}")
    details = len(json.dumps({key: value for key, value in raw.items() if key != "parts"}))
    if details > limits.max_details_chars:
        raise _invalid(
            where,
            f"{details:,} characters of usage, attempts and error; at most {limits.max_details_chars:,}",
        )
    for n, part in enumerate(turn.parts, start=1):
        _check_metadata(part.provider_metadata, f"{where}, part {n}", limits)
        if isinstance(part, _ImagePartIn):
            if part.mime_type not in ALLOWED_MIME_TYPES:
                raise InputError(
                    f"{where.capitalize()}, part {n} is an image of type \u201c{part.mime_type}\u201d; Retouch "
                    "imports PNG, JPEG, WebP and GIF images only."
                )
            images.load(part.file, part.sha256, part.mime_type, f"{where}, part {n}")
    imported = Turn.from_dict(turn.model_dump(mode="json"))
    _check_text(imported, where, limits)
    usage = replace(imported.usage, cost_usd=0.0) if imported.usage else None
    return replace(imported, usage=usage)


def _check_text(turn: Turn, where: str, limits: ImportLimits) -> None:
    """A message as long as one may be typed here; an answer as long as a model may write."""
    chars = sum(len(part.text) for part in turn.parts if isinstance(part, TextPart))
    if turn.role is Role.USER and chars > limits.max_prompt_chars:
        raise InputError(
            f"{where.capitalize()} is a message of {chars:,} characters; this Retouch takes messages of "
            f"at most {limits.max_prompt_chars:,}, so it cannot import this conversation."
        )
    if turn.role is Role.ASSISTANT and chars > limits.max_answer_chars:
        raise _invalid(where, f"an answer of {chars:,} characters; at most {limits.max_answer_chars:,}")


def _check_metadata(metadata: Mapping[str, Any], where: str, limits: ImportLimits) -> None:
    """No more allow-listed metadata than a real thought signature needs (the rest is dropped anyway)."""
    kept = known_metadata(metadata)
    chars = sum(len(value) for keys in kept.values() for value in keys.values() if isinstance(value, str))
    if chars > limits.max_metadata_chars:
        raise _invalid(
            where, f"{chars:,} characters of provider metadata; at most {limits.max_metadata_chars:,}"
        )


# --- version 1 ---------------------------------------------------------------------------------


def _upgraded(transcript: Mapping[str, Any]) -> dict[str, Any]:
    """A version 1 transcript in version 2's shape, ready for the same validation.

    Version 1 kept an image's role in ``provider_metadata["retouch"]`` and the thought flag in
    ``provider_metadata["gemini"]``, gave a text-only answer a status "ok" *and* an error, and
    kept each provider's raw usage report (without its cost): that becomes no usage. Anything
    not shaped as expected is left for validation to refuse.
    """
    upgraded = dict(transcript)
    turns = transcript.get("turns")
    if isinstance(turns, list):
        upgraded["turns"] = [
            _upgraded_turn(turn, n) if isinstance(turn, dict) else turn
            for n, turn in enumerate(turns, start=1)
        ]
    return upgraded


def _upgraded_turn(turn: Mapping[str, Any], n: int) -> dict[str, Any]:
    upgraded = {key: value for key, value in turn.items() if key not in ("status", "usage")}
    status = turn.get("status", "ok")
    if status not in ("ok", "error"):
        raise _invalid(f"turn {n}", f"unknown status \u201c{status}\u201d")
    error = turn.get("error")
    if status == "ok" and isinstance(error, dict):
        upgraded["error"] = None
        upgraded["notice"] = error.get("message")
    parts = turn.get("parts")
    if isinstance(parts, list):
        answer = turn.get("role") == "assistant"
        upgraded["parts"] = [
            _upgraded_part(part, answer) if isinstance(part, dict) else part for part in parts
        ]
    return upgraded


def _upgraded_part(part: Mapping[str, Any], answer: bool) -> dict[str, Any]:
    metadata = part.get("provider_metadata")
    if not isinstance(metadata, dict):
        return dict(part)
    retouch = metadata.get("retouch")
    role = retouch.get("role") if isinstance(retouch, dict) else None
    thought = any(isinstance(values, dict) and values.get("thought") is True for values in metadata.values())
    upgraded = {**part, "thought": thought}
    if part.get("kind") == "image":
        upgraded["role"] = role if isinstance(role, str) else ("answer" if answer else "input")
    return upgraded


# --- validation ----------------------------------------------------------------------------------


def _invalid(where: str, problem: str) -> InputError:
    return InputError(f"{TRANSCRIPT} in this file is not valid ({where}: {problem}). " + _EXPORT_AGAIN)


def _typed(kinds: type | tuple[type, ...], expected: str) -> BeforeValidator:
    """Exactly these JSON types (no coercion: "1" is not a number), or an error naming ``expected``."""

    def check(value: Any) -> Any:
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _as_tuple(kinds)):
            raise PydanticCustomError("wrong_type", "must be {expected}", {"expected": expected})
        return value

    return BeforeValidator(check)


def _as_tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _sha256(value: str) -> str:
    try:
        validate_sha256(value)
    except ValueError:
        raise PydanticCustomError(
            "bad_value", "\u201c{value}\u201d is not a SHA-256 hash", {"value": value}
        ) from None
    return value


def _when(value: str | None) -> str | None:
    """ISO 8601 (checked here, read by ``Turn.from_dict``); a time without offset is UTC."""
    if value is not None:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError(
                "bad_value", "\u201c{value}\u201d is not a date and time", {"value": value}
            ) from None
    return value


def _at_most(characters: int) -> AfterValidator:
    """No longer than the column that keeps it (PostgreSQL would refuse the row, mid-import)."""

    def check(value: str | None) -> str | None:
        if value is not None and len(value) > characters:
            raise PydanticCustomError("too_long", "longer than {max} characters", {"max": characters})
        return value

    return AfterValidator(check)


_Str = Annotated[str, _typed(str, "a string")]
_OptionalStr = Annotated[str | None, _typed((str, type(None)), "a string or null")]
_Bool = Annotated[bool, _typed(bool, "true or false")]
_Count = Annotated[int, _typed(int, "a whole number")]
_Dollars = Annotated[float, _typed((int, float), "a number")]
_Object = Annotated[dict[str, Any], _typed(dict, "an object")]


class _In(BaseModel):
    """A transcript object: unknown keys are ignored, known ones must have their JSON type."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _TextPartIn(_In):
    kind: Literal["text"]
    text: _Str
    thought: _Bool = False
    provider_metadata: _Object = {}


class _ImagePartIn(_In):
    kind: Literal["image"]
    sha256: Annotated[_Str, AfterValidator(_sha256)]
    mime_type: Annotated[_Str, _at_most(MIME_TYPE_MAX_LENGTH)]
    file: _Str
    role: ImageRole = ImageRole.INPUT
    thought: _Bool = False
    provider_metadata: _Object = {}


class _ErrorIn(_In):
    kind: Annotated[_Str, _at_most(ERROR_KIND_MAX_LENGTH)]
    message: _Str


class _AttemptIn(_In):
    provider: _Str
    model: _Str
    outcome: _Str
    detail: _Str = ""
    paid_by: _Str = "server"


class _UsageIn(_In):
    input_tokens: _Count = 0
    output_tokens: _Count = 0
    image_tokens: _Count = 0
    thought_tokens: _Count = 0
    cost_usd: _Dollars = 0.0


class _TurnIn(_In):
    role: Role
    provider: Annotated[_OptionalStr, _at_most(PROVIDER_MAX_LENGTH)] = None
    model: Annotated[_OptionalStr, _at_most(MODEL_MAX_LENGTH)] = None
    finish_reason: Annotated[_OptionalStr, _at_most(FINISH_REASON_MAX_LENGTH)] = None
    error: _ErrorIn | None = None
    notice: _OptionalStr = None
    usage: _UsageIn | None = None
    attempts: Annotated[list[_AttemptIn], _typed(list, "a list")] = []
    created_at: Annotated[_OptionalStr, AfterValidator(_when)] = None
    variant: Annotated[int | None, _typed((int, type(None)), "a whole number or null")] = None
    picked: _Bool = False
    parts: Annotated[
        list[Annotated[_TextPartIn | _ImagePartIn, Field(discriminator="kind")]], _typed(list, "a list")
    ]

    @model_validator(mode="after")
    def _answered_or_failed(self) -> _TurnIn:
        if self.error is not None and (self.parts or self.usage or self.notice):
            raise PydanticCustomError(
                "bad_value", "a failed answer has an error only, no parts, usage or notice"
            )
        if self.variant is not None and not 0 <= self.variant < MAX_VARIANTS:
            raise PydanticCustomError("bad_value", f"a variant is numbered 0-{MAX_VARIANTS - 1}")
        if self.picked and (self.error is not None or self.role is not Role.ASSISTANT):
            raise PydanticCustomError("bad_value", "only an answer that succeeded can be picked")
        return self


class _TranscriptIn(_In):
    title: _OptionalStr = None
    turns: Annotated[list[_TurnIn], _typed(list, "a list")]


def _raw_turns(raw: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The raw turn objects (validated already), for the limits measured on what the file said."""
    return list(raw["turns"])


def _validated(raw: Mapping[str, Any]) -> _TranscriptIn:
    try:
        return _TranscriptIn.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise _invalid(*_described(first)) from None


_CONTAINERS = {"parts": "part", "attempts": "attempt"}


def _described(error: Mapping[str, Any]) -> tuple[str, str]:
    """Where a validation error is ("turn 4, attempt 2") and what is wrong, in the export's own words."""
    loc = list(error["loc"])
    where, key = "top level", None
    if len(loc) >= 2 and loc[0] == "turns" and isinstance(loc[1], int):
        where, loc = f"turn {loc[1] + 1}", loc[2:]
        while loc:
            head = loc.pop(0)
            index = loc[0] if loc else None  # by name: mypy would keep loc[0] narrowed after the pop
            if head in _CONTAINERS and isinstance(index, int):
                loc.pop(0)
                where += f", {_CONTAINERS[head]} {index + 1}"
                if head == "parts" and loc and loc[0] in ("text", "image"):
                    loc.pop(0)  # the discriminator's tag
            elif head == "error" and (not loc or error["type"] != "model_type"):
                where += ", error"
            else:
                key = str(head)
                break
    elif loc:
        key = str(loc[0])
    return where, _problem(error, key)


def _problem(error: Mapping[str, Any], key: str | None) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    named = f"\u201c{key}\u201d"
    if kind == "missing":
        return f"{named} is missing"
    if kind == "wrong_type":
        return f"{named} must be {ctx['expected']}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{named} must be an object" if key not in (None, "error") else "expected an object"
    if kind == "union_tag_invalid":
        return f"unknown part kind \u201c{ctx.get('tag')}\u201d"
    if kind == "union_tag_not_found":
        return "\u201ckind\u201d is missing"
    if kind in ("literal_error", "enum"):
        return f"unknown {key} \u201c{error.get('input')}\u201d"
    if kind == "bad_value":
        return str(error["msg"])
    if kind == "too_long":
        return f"{named} is longer than {ctx['max']} characters"
    return f"{named} is not valid"
