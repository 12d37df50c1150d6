"""The neutral conversation model: plain values that know nothing of HTTP, SQL or Gradio.

A conversation is an ordered list of turns; a turn is a role plus parts. Images are
referred to by the sha256 of their bytes (the bytes live in the blob store). Whatever a
provider needs echoed back on replay (Gemini's ``thoughtSignature``, its ``thought`` flag)
travels verbatim on the part it came with, under ``provider_metadata[<provider>]``.

Invariant: what storage loads is exactly what a provider adapter replays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "Conversation",
    "GenerationOptions",
    "ImageData",
    "ImagePart",
    "Metadata",
    "Part",
    "ProviderReply",
    "ReplyPart",
    "Role",
    "TextPart",
    "Turn",
    "TurnError",
    "TurnStatus",
    "frozen_metadata",
]

Metadata = Mapping[str, Any]


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_output_tokens": self.max_output_tokens,
            "stop_sequences": list(self.stop_sequences),
            "seed": self.seed,
            "aspect_ratio": self.aspect_ratio,
            "image_size": self.image_size,
            "safety_threshold": self.safety_threshold,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationOptions:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["stop_sequences"] = tuple(known.get("stop_sequences") or ())
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

    def final_image(self) -> ImageData | None:
        """The last non-thought image; else the last image of any kind (see gemini-api.md §3)."""
        images = [p for p in self.parts if isinstance(p, ImageData)]
        answers = [p for p in images if not p.is_thought()]
        if answers:
            return answers[-1]
        return images[-1] if images else None


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
    created_at: datetime | None = None

    def text(self) -> str:
        """The visible text: all non-thought text parts joined."""
        return "\n\n".join(p.text for p in self.parts if isinstance(p, TextPart) and not p.is_thought())

    def images(self) -> list[ImagePart]:
        return [p for p in self.parts if isinstance(p, ImagePart)]

    def shown_image(self) -> ImagePart | None:
        """The image a user sees for this turn: the last non-thought one."""
        images = self.images()
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
