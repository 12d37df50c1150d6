"""The neutral conversation model: plain values that know nothing of HTTP, SQL or Gradio.

A conversation is an ordered list of turns; a turn is a role plus parts. Images are
referred to by the sha256 of their bytes (the bytes live in the blob store). Whatever a
provider needs echoed back on replay (Gemini's ``thoughtSignature``, its ``thought`` flag)
travels verbatim on the part it came with, under ``provider_metadata[<provider>]``; only the
keys in ``KNOWN_METADATA`` are ever imported or replayed (``known_metadata``).

Invariant: what storage loads is exactly what a provider adapter replays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "Conversation",
    "ConversationSummary",
    "ShareLink",
    "Attempt",
    "GenerationOptions",
    "ImageRole",
    "KNOWN_METADATA",
    "ImageData",
    "ImagePart",
    "OpenAIOptions",
    "Metadata",
    "Part",
    "ProviderReply",
    "ReplyPart",
    "Role",
    "Route",
    "TextPart",
    "Turn",
    "TurnError",
    "TurnStatus",
    "aware_utc",
    "extension_for",
    "mime_for",
    "frozen_metadata",
    "known_metadata",
    "plain_data",
    "latest_answers",
    "through_last_user_turn",
]

Metadata = Mapping[str, Any]

#: The image types Retouch stores, and the file extension each is stored and sent under.
IMAGE_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
_IMAGE_TYPES = {**{ext: mime for mime, ext in IMAGE_EXTENSIONS.items()}, "jpeg": "image/jpeg"}


def extension_for(mime_type: str) -> str:
    """File extension for an image mime type; unknown types are kept as opaque ``bin``."""
    return IMAGE_EXTENSIONS.get(mime_type.lower(), "bin")


def mime_for(extension: str, default: str = "image/png") -> str:
    """The mime type of an image extension or format name (``png``, ``jpg``/``jpeg``, ``webp``, ``gif``)."""
    return _IMAGE_TYPES.get(extension.lower(), default)


def aware_utc(value: datetime) -> datetime:
    """A timezone-aware datetime in UTC; a naive one is refused (its zone would be a guess)."""
    if value.utcoffset() is None:
        raise ValueError("datetimes must be timezone-aware")
    return value.astimezone(UTC)


def plain_data(value: Any) -> Any:
    """Read-only mappings (``frozen_metadata``) and tuples as the dicts and lists JSON knows."""
    if isinstance(value, Mapping):
        return {key: plain_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(item) for item in value]
    return value


def frozen_metadata(value: Mapping[str, Any] | None = None) -> Metadata:
    """Read-only view so parts stay hashable-by-identity values nobody mutates in place."""
    return MappingProxyType(dict(value or {}))


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class TurnStatus(StrEnum):
    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True)
class TextPart:
    text: str
    provider_metadata: Metadata = field(default_factory=frozen_metadata)

    def is_thought(self) -> bool:
        """Gemini's thinking summaries: replayed, never shown as the answer."""
        return any(bool(meta.get("thought")) for meta in self.provider_metadata.values())


@dataclass(frozen=True)
class ImagePart:
    """An image stored in the blob store, referred to by content hash."""

    sha256: str
    mime_type: str
    provider_metadata: Metadata = field(default_factory=frozen_metadata)

    def is_thought(self) -> bool:
        return any(bool(meta.get("thought")) for meta in self.provider_metadata.values())

    @property
    def image_role(self) -> ImageRole:
        return ImageRole(self.provider_metadata.get("retouch", {}).get("role", ImageRole.INPUT))


Part = TextPart | ImagePart


@dataclass(frozen=True)
class ImageData:
    """An image a provider returned, not yet in the blob store."""

    data: bytes
    mime_type: str
    provider_metadata: Metadata = field(default_factory=frozen_metadata)

    def is_thought(self) -> bool:
        return any(bool(meta.get("thought")) for meta in self.provider_metadata.values())


ReplyPart = TextPart | ImageData


class Route(StrEnum):
    """Which provider answers: Gemini with OpenAI as fallback, or one of them only."""

    AUTO = "auto"
    GEMINI = "gemini"
    OPENAI = "openai"


class ImageRole(StrEnum):
    """What an image in a user turn is for (kept under ``provider_metadata["retouch"]``).

    INPUT is a photo to edit; MASK is the painted region as a PNG whose alpha is 0 where the
    edit goes (for OpenAI); MARKED is the current image with that region drawn on it (for Gemini).
    """

    INPUT = "input"
    MASK = "mask"
    MARKED = "marked"


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _image_role(value: Any) -> bool:
    return isinstance(value, str) and value in {role.value for role in ImageRole}


#: The ``provider_metadata`` Retouch keeps, per namespace: each key and the test its value must pass.
#: Gemini parts carry ``thought`` and ``thoughtSignature`` (also spelt the proto way) beside their one
#: data field (gemini-api.md §2, §4); OpenAI answers record how the image was made; Retouch marks what
#: a user's image is for. Nothing else is kept: a key such as ``inlineData`` or ``text``, replayed
#: beside the part, would replace the part's own data on the wire.
KNOWN_METADATA: Mapping[str, Mapping[str, Callable[[Any], bool]]] = MappingProxyType(
    {
        "gemini": MappingProxyType({"thought": _flag, "thoughtSignature": _text, "thought_signature": _text}),
        "openai": MappingProxyType(
            dict.fromkeys(("size", "quality", "background", "output_format", "revised_prompt"), _text)
        ),
        "retouch": MappingProxyType({"role": _image_role}),
    }
)


def known_metadata(metadata: Mapping[str, Any]) -> Metadata:
    """Only the ``KNOWN_METADATA`` keys of ``metadata`` whose values pass their test; the rest is dropped."""
    kept = {}
    for namespace, tests in KNOWN_METADATA.items():
        values = metadata.get(namespace)
        if isinstance(values, Mapping):
            known = {key: value for key, value in values.items() if key in tests and tests[key](value)}
            if known:
                kept[namespace] = known
    return frozen_metadata(kept)


@dataclass(frozen=True)
class OpenAIOptions:
    """Settings for OpenAI image edits; ``None`` means "don't send, let the model decide"."""

    model: str | None = None
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    input_fidelity: str | None = None


@dataclass(frozen=True)
class GenerationOptions:
    """What the user chose in the options panel; adapters send only what a model accepts."""

    model: str
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_output_tokens: int | None = None
    stop_sequences: tuple[str, ...] = ()
    seed: int | None = None
    aspect_ratio: str | None = None
    image_size: str | None = None
    safety_threshold: str | None = None
    route: Route = Route.AUTO
    openai: OpenAIOptions = field(default_factory=OpenAIOptions)
    budget_usd: float | None = None  # stop before a turn could take the conversation past it

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop_sequences"] = list(self.stop_sequences)
        data["route"] = self.route.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationOptions:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["stop_sequences"] = tuple(known.get("stop_sequences") or ())
        known["route"] = Route(known.get("route") or Route.AUTO)
        known["openai"] = OpenAIOptions(**(known.get("openai") or {}))
        return cls(**known)


@dataclass(frozen=True)
class ProviderReply:
    """One successful provider answer, in neutral form."""

    provider: str
    model: str
    parts: tuple[ReplyPart, ...]
    finish_reason: str | None = None
    usage: Metadata = field(default_factory=frozen_metadata)
    response_id: str | None = None
    request_hash: str | None = None
    cached: bool = False

    def final_image(self) -> ImageData | None:
        """The last non-thought image; else the last image of any kind (see gemini-api.md §3)."""
        images = [p for p in self.parts if isinstance(p, ImageData)]
        answers = [p for p in images if not p.is_thought()]
        if answers:
            return answers[-1]
        return images[-1] if images else None


@dataclass(frozen=True)
class Attempt:
    """One provider call made for a turn, kept so the chat can say what happened and why."""

    provider: str
    model: str
    outcome: str  # "ok" or the error kind ("unavailable", "blocked", ...)
    detail: str = ""
    paid_by: str = "server"  # whose key: "server" (counts toward the daily cap) or "visitor"


@dataclass(frozen=True)
class TurnError:
    """Why an assistant turn failed: the error class name and a sentence for the user."""

    kind: str
    message: str


@dataclass(frozen=True)
class Turn:
    role: Role
    parts: tuple[Part, ...]
    status: TurnStatus = TurnStatus.OK
    provider: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    error: TurnError | None = None
    options: Metadata = field(default_factory=frozen_metadata)
    usage: Metadata = field(default_factory=frozen_metadata)
    attempts: tuple[Attempt, ...] = ()
    cost_usd: float | None = None  # estimated dollars of the answering call (chat/pricing.py)
    request_hash: str | None = None  # the exact request that made it, for the response cache
    created_at: datetime | None = None

    def text(self) -> str:
        """The visible text: all non-thought text parts joined."""
        return "\n\n".join(p.text for p in self.parts if isinstance(p, TextPart) and not p.is_thought())

    def images(self) -> list[ImagePart]:
        return [p for p in self.parts if isinstance(p, ImagePart)]

    def shown_image(self) -> ImagePart | None:
        """The image this turn stands for: the last non-thought one, never a mask or a marked copy."""
        images = [p for p in self.images() if p.image_role is ImageRole.INPUT]
        answers = [p for p in images if not p.is_thought()]
        if answers:
            return answers[-1]
        return images[-1] if images else None


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    turns: tuple[Turn, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def cost_usd(self) -> float:
        """Estimated dollars of every answered call so far."""
        return sum(t.cost_usd or 0.0 for t in self.turns)

    def awaiting_answer(self) -> bool:
        """True when the last user turn has no successful answer yet (new, failed or interrupted)."""
        for turn in reversed(self.turns):
            if turn.role is Role.USER:
                return True
            if turn.status is TurnStatus.OK:
                return False
        return False

    def latest_image(self) -> ImagePart | None:
        """The image the next edit starts from: the newest shown image of any turn."""
        for turn in reversed(self.turns):
            if turn.status is TurnStatus.OK and (image := turn.shown_image()):
                return image
        return None


def latest_answers(turns: Sequence[Turn]) -> list[Turn]:
    """The history to replay: an answer regenerated for the same user message replaces the earlier one."""
    kept: list[Turn] = []
    for turn in turns:
        if turn.role is Role.ASSISTANT and turn.status is TurnStatus.OK:
            for index in range(len(kept) - 1, -1, -1):
                if kept[index].role is Role.USER:
                    break
                if kept[index].status is TurnStatus.OK:
                    del kept[index]
                    break
        kept.append(turn)
    return kept


def through_last_user_turn(turns: Sequence[Turn]) -> list[Turn]:
    """What a provider is asked to answer: everything up to and including the last user message."""
    for index in range(len(turns) - 1, -1, -1):
        if turns[index].role is Role.USER:
            return list(turns[: index + 1])
    return []


@dataclass(frozen=True)
class ConversationSummary:
    """One entry of a visitor's conversation list."""

    id: str
    title: str
    updated_at: datetime
    turn_count: int
    thumbnail: ImagePart | None = None


@dataclass(frozen=True)
class ShareLink:
    """A link that gives whoever holds ``token`` a view of, or a seat in, one conversation."""

    token: str
    conversation_id: str
    kind: str  # "view" or "continue"
    created_at: datetime
