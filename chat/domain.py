"""The neutral conversation model: plain values that know nothing of HTTP, SQL or Gradio.

A conversation is an ordered list of turns; a turn is a role plus parts. Images are
referred to by the sha256 of their bytes (the bytes live in the blob store). What Retouch
itself knows about a part is a field: an image's ``role`` (a photo to edit, a mask, a
marked copy, an answer) and whether a part is a model's ``thought``. Whatever a provider
needs echoed back on replay and nothing else (Gemini's ``thoughtSignature``) travels
verbatim on the part it came with, under ``provider_metadata[<provider>]``; only the keys
in ``KNOWN_METADATA`` are ever imported or replayed (``known_metadata``).

An assistant turn is either answered (its parts, its ``Usage``) or failed (its
``TurnError``, nothing else): never both. An answer without an image carries a ``notice``
saying why, for the user.

Each type has one ``to_dict``/``from_dict`` pair: storage's JSON columns, the export and
the API transcript all use it.

Invariant: what storage loads is exactly what a provider adapter replays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
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
    "LOCAL_PROVIDER",
    "ImageData",
    "ImagePart",
    "OpenAIOptions",
    "Metadata",
    "Part",
    "Phase",
    "Progress",
    "ProgressSink",
    "ProviderReply",
    "ReplyPart",
    "Role",
    "Route",
    "TextPart",
    "Turn",
    "TurnError",
    "TurnStatus",
    "Usage",
    "aware_utc",
    "extension_for",
    "mime_for",
    "frozen_metadata",
    "known_metadata",
    "part_from_dict",
    "plain_data",
    "latest_answers",
    "MAX_VARIANTS",
    "answers_to",
    "pick_answer",
    "through_last_user_turn",
    "token_count",
]

Metadata = Mapping[str, Any]

#: Who "answers" a quick edit (crop, rotate, flip, resize: chat/media/quick_edits.py): Retouch itself,
#: with Pillow, no model. Its answer's ``model`` says what the edit did; providers replay its image as
#: one the user supplied.
LOCAL_PROVIDER = "local"

#: The most answers one message may get at once (the Variants option): each is a call of its own.
MAX_VARIANTS = 4

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


def _utc(value: datetime) -> datetime:
    """A stored or imported time in UTC; one without an offset is UTC, like every time Retouch stores."""
    return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


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
    """Derived from a turn (``Turn.status``): an assistant turn that failed has an error, nothing else."""

    OK = "ok"
    ERROR = "error"


class ImageRole(StrEnum):
    """What an image is for.

    INPUT is a photo to edit (a user's upload); ANSWER is an image a model made; MASK is the
    painted region as a PNG whose alpha is 0 where the edit goes (for OpenAI); MARKED is the
    current image with that region drawn on it (for Gemini).
    """

    INPUT = "input"
    ANSWER = "answer"
    MASK = "mask"
    MARKED = "marked"

    def is_shown(self) -> bool:
        """A picture of the conversation (what the chat, thumbnails and the next edit use)."""
        return self in (ImageRole.INPUT, ImageRole.ANSWER)


@dataclass(frozen=True)
class TextPart:
    text: str
    _: KW_ONLY
    thought: bool = (
        False  # a model's thinking summary: shown apart, never as the answer; replayed only if signed
    )
    provider_metadata: Metadata = field(default_factory=frozen_metadata)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "text",
            "text": self.text,
            "thought": self.thought,
            "provider_metadata": plain_data(self.provider_metadata),
        }


@dataclass(frozen=True)
class ImagePart:
    """An image stored in the blob store, referred to by content hash."""

    sha256: str
    mime_type: str
    _: KW_ONLY
    role: ImageRole = ImageRole.INPUT
    thought: bool = False  # an interim image of a model's thinking
    provider_metadata: Metadata = field(default_factory=frozen_metadata)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "image",
            "sha256": self.sha256,
            "mime_type": self.mime_type,
            "role": self.role.value,
            "thought": self.thought,
            "provider_metadata": plain_data(self.provider_metadata),
        }


Part = TextPart | ImagePart


def part_from_dict(data: Mapping[str, Any]) -> Part:
    """The inverse of ``TextPart.to_dict`` / ``ImagePart.to_dict`` (input already validated)."""
    metadata = known_metadata(data.get("provider_metadata") or {})
    thought = bool(data.get("thought", False))
    if data["kind"] == "text":
        return TextPart(data["text"], thought=thought, provider_metadata=metadata)
    return ImagePart(
        data["sha256"],
        data["mime_type"],
        role=ImageRole(data.get("role") or ImageRole.INPUT),
        thought=thought,
        provider_metadata=metadata,
    )


@dataclass(frozen=True)
class ImageData:
    """An image a provider returned, not yet in the blob store."""

    data: bytes
    mime_type: str
    _: KW_ONLY
    thought: bool = False
    provider_metadata: Metadata = field(default_factory=frozen_metadata)

    @cached_property
    def sha256(self) -> str:
        """Its content address, worked out once (~1 ms for a 1K PNG): the provider adapter that keys
        the image's base64 text by it and the writer that stores the image share it."""
        return hashlib.sha256(self.data).hexdigest()


ReplyPart = TextPart | ImageData


def token_count(value: object) -> int:
    """A token count as a provider reported it; anything but a positive integer counts as none."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclass(frozen=True)
class Usage:
    """What an answered call used, in neutral terms, and what it probably cost (chat/providers/pricing.py).

    ``output_tokens`` is text only: images and thoughts are counted apart, as they are priced apart.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    image_tokens: int = 0
    thought_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.image_tokens + self.thought_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        cost = data.get("cost_usd")
        return cls(
            input_tokens=token_count(data.get("input_tokens")),
            output_tokens=token_count(data.get("output_tokens")),
            image_tokens=token_count(data.get("image_tokens")),
            thought_tokens=token_count(data.get("thought_tokens")),
            cost_usd=float(cost)
            if isinstance(cost, int | float) and not isinstance(cost, bool) and cost > 0
            else 0.0,
        )


class Phase(StrEnum):
    """Where a running call is, in words a user reads ("Gemini is thinking…", "draft 1", "final")."""

    WAITING = "waiting"  # sent, nothing back yet
    THINKING = "thinking"  # thought summaries arriving
    WRITING = "writing"  # answer text arriving
    DRAFT = "draft"  # an interim image arrived (Gemini's thought image, OpenAI's partial image)
    FINAL = "final"  # the final image arrived; the rest of the answer and storing it follow
    RETRYING = "retrying"  # the call failed and is tried again (``note`` says why)
    FALLING_BACK = "falling_back"  # this provider failed; the next one is asked (``note`` says why)


@dataclass(frozen=True)
class Progress:
    """What one running call has shown so far: a snapshot for the user to watch, never stored or replayed.

    Each snapshot holds everything so far (the text, the thoughts, the drafts), so a watcher that
    skipped some (a slow browser) loses nothing by showing only the newest. The answer itself
    is the call's ``ProviderReply``, parsed from the whole stream as the non-streaming path parses
    one response: a draft is shown, never kept from here.
    """

    provider: str
    phase: Phase = Phase.WAITING
    model: str = ""
    text: str = ""  # the answer's text so far
    thoughts: str = ""  # the thinking summary so far
    drafts: tuple[ImageData, ...] = ()  # interim images so far, oldest first
    drafts_expected: int | None = (
        None  # how many drafts the call asked for (OpenAI's partial_images); None: unknown
    )
    note: str = ""  # why the phase changed (a retry's or a fallback's reason), one sentence


#: Where a provider reports progress. Called from the worker thread the call blocks in, so an
#: implementation must be thread-safe and quick (hand the snapshot to the event loop, keep the newest).
ProgressSink = Callable[[Progress], None]


class Route(StrEnum):
    """Which provider answers: Gemini with OpenAI as fallback, or one of them only."""

    AUTO = "auto"
    GEMINI = "gemini"
    OPENAI = "openai"


def _text(value: object) -> bool:
    return isinstance(value, str)


#: The ``provider_metadata`` Retouch keeps, per namespace: each key and the test its value must pass.
#: Only what a provider must get back: Gemini's ``thoughtSignature`` (also spelt the proto way) beside
#: the part's one data field (gemini-api.md §2, §4). Nothing else is kept: a key such as ``inlineData``
#: or ``text``, replayed beside the part, would replace the part's own data on the wire.
KNOWN_METADATA: Mapping[str, Mapping[str, Callable[[object], bool]]] = MappingProxyType(
    {"gemini": MappingProxyType({"thoughtSignature": _text, "thought_signature": _text})}
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
    variants: int = 1  # answers made at once for one message (1-4), each its own call: MAX_VARIANTS

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
    usage: Usage = field(default_factory=Usage)
    response_id: str | None = None
    request_hash: str | None = None
    cached: bool = False

    def final_image(self) -> ImageData | None:
        """The last non-thought image; else the last image of any kind (see gemini-api.md §3)."""
        images = [p for p in self.parts if isinstance(p, ImageData)]
        answers = [p for p in images if not p.thought]
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
    paid_by: str = "server"  # whose key: "server" (counts toward the daily cap), "visitor" or "cache"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


@dataclass(frozen=True)
class TurnError:
    """Why an assistant turn failed: the error class name and a sentence for the user."""

    kind: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TurnError:
        return cls(kind=data["kind"], message=data["message"])


@dataclass(frozen=True)
class Turn:
    """A user's message, or an answer: answered (parts and usage) or failed (an error), never both."""

    role: Role
    parts: tuple[Part, ...]
    _: KW_ONLY
    provider: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    error: TurnError | None = None  # the answer failed: why
    notice: str | None = None  # answered, but without an image: why, for the user
    options: Metadata = field(default_factory=frozen_metadata)
    usage: Usage | None = None  # answered turns: what the call used and cost
    attempts: tuple[Attempt, ...] = ()
    request_hash: str | None = None  # the exact request that made it, for the response cache
    created_at: datetime | None = None
    variant: int | None = None  # one of several answers made at once (0 is "a"); None: a lone answer
    picked: bool = (
        False  # the answer the next edit builds on, among its message's answers (``latest_answers``)
    )

    def __post_init__(self) -> None:
        if self.error is not None and (self.parts or self.usage or self.notice):
            raise ValueError("a failed turn has its error only: no parts, usage or notice")
        if self.picked and self.error is not None:
            raise ValueError("a failed turn cannot be picked")
        if self.variant is not None and not 0 <= self.variant < MAX_VARIANTS:
            raise ValueError(f"a variant is numbered 0-{MAX_VARIANTS - 1}")

    @property
    def status(self) -> TurnStatus:
        return TurnStatus.ERROR if self.error is not None else TurnStatus.OK

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def local(self) -> bool:
        """A quick edit's answer: made here without a model (``LOCAL_PROVIDER``)."""
        return self.provider == LOCAL_PROVIDER

    @property
    def cost_usd(self) -> float:
        """Estimated dollars of the answering call (0 for messages, failures and cached answers)."""
        return self.usage.cost_usd if self.usage else 0.0

    def text(self) -> str:
        """The visible text: all non-thought text parts joined."""
        return "\n\n".join(p.text for p in self.parts if isinstance(p, TextPart) and not p.thought)

    def thoughts(self) -> str:
        """The model's thinking summaries, joined."""
        return "\n\n".join(p.text for p in self.parts if isinstance(p, TextPart) and p.thought and p.text)

    def images(self) -> list[ImagePart]:
        return [p for p in self.parts if isinstance(p, ImagePart)]

    def shown_images(self) -> list[ImagePart]:
        """The pictures meant for the user: no masks or marked copies; thought images only if that is all."""
        pictures = [p for p in self.images() if p.role.is_shown()]
        return [p for p in pictures if not p.thought] or pictures[-1:]

    def shown_image(self) -> ImagePart | None:
        """The image this turn stands for: the last shown one (see ``shown_images``)."""
        shown = self.shown_images()
        return shown[-1] if shown else None

    def to_dict(self) -> dict[str, Any]:
        """Everything but ``options`` (the owner's settings), in the one form storage and exports share."""
        return {
            "role": self.role.value,
            "provider": self.provider,
            "model": self.model,
            "finish_reason": self.finish_reason,
            "error": self.error.to_dict() if self.error else None,
            "notice": self.notice,
            "usage": self.usage.to_dict() if self.usage else None,
            "attempts": [attempt.to_dict() for attempt in self.attempts],
            "created_at": aware_utc(self.created_at).isoformat() if self.created_at else None,
            "variant": self.variant,
            "picked": self.picked,
            "parts": [part.to_dict() for part in self.parts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Turn:
        """The inverse of ``to_dict`` (input already validated): no options, no request hash."""
        error, usage, created = data.get("error"), data.get("usage"), data.get("created_at")
        return cls(
            role=Role(data["role"]),
            parts=tuple(part_from_dict(part) for part in data.get("parts") or ()),
            provider=data.get("provider"),
            model=data.get("model"),
            finish_reason=data.get("finish_reason"),
            error=TurnError.from_dict(error) if error else None,
            notice=data.get("notice"),
            usage=Usage.from_dict(usage) if usage is not None else None,
            attempts=tuple(Attempt.from_dict(attempt) for attempt in data.get("attempts") or ()),
            created_at=_utc(datetime.fromisoformat(created)) if created else None,
            variant=data.get("variant"),
            picked=bool(data.get("picked")),
        )


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    turns: tuple[Turn, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None
    replayable: bool = True  # False: loaded to be shown, without the parts' provider metadata (MBs)
    # Changes that add no turn (a pick), counted by storage: with the turn count, the stored version a
    # copy in memory is checked against. Bookkeeping, so two copies of the same turns compare equal.
    revision: int = field(default=0, compare=False)

    def cost_usd(self) -> float:
        """Estimated dollars of every answered call so far."""
        return sum(t.cost_usd for t in self.turns)

    def awaiting_answer(self) -> bool:
        """True when the last user turn has no successful answer yet (new, failed or interrupted)."""
        for turn in reversed(self.turns):
            if turn.role is Role.USER:
                return True
            if not turn.failed:
                return False
        return False

    def latest_image(self) -> ImagePart | None:
        """The image the next edit starts from, and the conversation's thumbnail: the newest shown image."""
        for turn in reversed(self.turns):
            if not turn.failed and (image := turn.shown_image()):
                return image
        return None


def latest_answers(turns: Sequence[Turn]) -> list[Turn]:
    """The history to replay: of the answers to one user message (a Retry adds one, Variants add
    several at once), only the one the next edit builds on is kept, where it stands; failed ones
    stay (providers skip them). That is the newest picked answer: each answer is stored picked,
    a batch of variants its first success, and "Use this" moves the pick (``pick_answer``). Answers
    stored before picks existed have none: the newest success is kept, as it always was."""
    kept: list[Turn] = []
    group: list[Turn] = []

    def close() -> None:
        answered = [turn for turn in group if not turn.failed]
        chosen = ([turn for turn in answered if turn.picked] or answered)[-1:]
        kept.extend(turn for turn in group if turn.failed or any(turn is one for one in chosen))
        group.clear()

    for turn in turns:
        if turn.role is Role.USER:
            close()
            kept.append(turn)
        else:
            group.append(turn)
    close()
    return kept


def answers_to(turns: Sequence[Turn], index: int) -> range:
    """The indexes of the answers given to the same user message as the answer at ``index``."""
    start = index
    while start > 0 and turns[start - 1].role is Role.ASSISTANT:
        start -= 1
    end = index + 1
    while end < len(turns) and turns[end].role is Role.ASSISTANT:
        end += 1
    return range(start, end)


def pick_answer(turns: Sequence[Turn], index: int) -> tuple[Turn, ...]:
    """``turns`` with the answer at ``index`` picked and every other answer to its message not:
    ValueError if that turn is no answer, or failed."""
    chosen = turns[index]
    if chosen.role is not Role.ASSISTANT or chosen.failed:
        raise ValueError("only an answer that succeeded can be picked")
    group = answers_to(turns, index)
    return tuple(
        replace(turn, picked=n == index) if n in group and not turn.failed else turn
        for n, turn in enumerate(turns)
    )


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
