"""One exception class per failure class, so policy and UI branch on types, never on strings.

RetouchError
├── InputError               the user's own input is unusable (not an image, too big, empty)
├── AccessError              the caller may not do this (not theirs, revoked link, read-only)
├── LimitError               a rate limit or the daily spend cap; nothing was sent
├── ConversationMovedError   the stored conversation has turns the writer's copy lacks: a turn
│                            whose lease was lost is not put after someone else's (storage raises it)
├── StoppedError             the user stopped the answer (Stop); the call was ended, nothing kept of it
├── StorageUnavailableError  the image store (S3) refused, failed (5xx) or did not answer in time;
│   │                        nothing that needs the image was written
│   └── CorruptImageError    it answered with bytes that are not the image asked for (wrong sha256)
└── ProviderError            a provider call failed; carries provider, HTTP status, detail
    ├── AuthError            key missing, invalid or not allowed (401/403, API_KEY_INVALID)
    ├── BadRequestError      the request itself is wrong (400, 404 unknown model); never retried
    ├── RateLimitedError     429; ``retry_after`` seconds when the provider said
    ├── UnavailableError     5xx, connection failures: worth retrying or falling back
    ├── ProviderTimeoutError no answer in time
    ├── BlockedError         refused for safety; ``reason`` as the provider named it
    └── NoImageError         answered, but without an image; ``reply`` keeps what came back

StoppedReading               (not a RetouchError) a provider call's stream was read after its
                             call was stopped (chat/providers/sse.py); it ends the worker thread,
                             whose task was cancelled already, so nobody shows it.

ConversationNotFoundError    (a LookupError) storage has no row for the id; never shown as is:
                             chat/sharing/access.py turns it into an AccessError. Storage raises it, so it
                             lives here, the one module storage may share with the domain.

A provider's own words (``detail``) reach the chat, the database and the attempts of a turn, so
key-like strings in them are hidden once, here, when the error is made (see ``redact``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chat.domain import ProviderReply

__all__ = [
    "AccessError",
    "AuthError",
    "BadRequestError",
    "BlockedError",
    "BusyError",
    "ConversationMovedError",
    "ConversationNotFoundError",
    "CorruptImageError",
    "InputError",
    "LimitError",
    "KEY_HIDDEN",
    "MissingKeyError",
    "NoImageError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitedError",
    "RetouchError",
    "StorageUnavailableError",
    "StoppedError",
    "StoppedReading",
    "UnavailableError",
    "redact",
]

PROVIDER_NAMES = {"gemini": "Gemini", "openai": "OpenAI"}

KEY_HIDDEN = "[key hidden]"
# What a provider echoes of a key: OpenAI's 401 quotes the rejected key, masked
# ("sk-proj-****abcd", "inval*******4444") or whole when it is short ("Incorrect API key
# provided: Toxic."); Google keys are "AIza" and 35 more characters.
_KEY_LIKE = re.compile(
    r"(?<=API key provided: )(?!\[key hidden\])\S+?(?=\.?(?:\s|$))"  # OpenAI's echo, masked or not
    r"|AIza[0-9A-Za-z_-]{30,}"  # a Google API key
    r"|\bsk-[0-9A-Za-z_*-]+"  # an OpenAI key, whole or masked
    r"|\S*\*{3,}\S*"  # anything masked with stars
)


def redact(text: str, secret: str = "") -> str:
    """``text`` with key-like strings and ``secret`` (the key a call used) replaced by "[key hidden]"."""
    text = _KEY_LIKE.sub(KEY_HIDDEN, text)
    return text.replace(secret, KEY_HIDDEN) if secret else text


class RetouchError(Exception):
    """Base of every error the app turns into a chat message."""

    def user_message(self) -> str:
        return str(self)


class InputError(RetouchError):
    """The user's message or upload cannot be used; the message says what to do instead."""


class AccessError(RetouchError):
    """The actor may not do this; the message says what they can do instead."""


class LimitError(RetouchError):
    """A limit was reached; nothing was sent to any provider."""


class ConversationMovedError(RetouchError):
    """Another turn was stored after the copy a writer appends to: its lease had expired (its
    replica stalled for a whole lease), and another replica took the conversation over."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            "Another message reached this conversation first, so yours was not added. "
            "Reload the conversation and send it again."
        )
        self.conversation_id = conversation_id


class BusyError(RetouchError):
    """A change that must not overlap a turn (picking a variant, a quick edit) came while a turn of the
    conversation runs, on some replica: refused at once rather than queued behind it."""

    def __init__(self) -> None:
        super().__init__("An answer is being made in this conversation right now. Try again when it is done.")


class StoppedError(RetouchError):
    """Someone with write access stopped the turn while its provider call ran; stored as its answer."""

    kind = "stopped"

    def __init__(self) -> None:
        super().__init__("You stopped this answer. Your message is kept: press Retry to ask again.")


class StorageUnavailableError(RetouchError):
    """The image store could not store or give back an image. The message names no store, key or
    address (an operator finds those in the log); ``operation`` is what failed (put, get, ...)."""

    kind = "storage"

    def __init__(self, operation: str) -> None:
        super().__init__(
            "The image storage is not answering right now, so nothing was changed. "
            "Your message is kept: press Retry (or send it again) in a moment."
        )
        self.operation = operation


class CorruptImageError(StorageUnavailableError):
    """A fetched image's bytes do not hash to the sha256 they were asked for: never cached or used."""


class ConversationNotFoundError(LookupError):
    """The conversation id has no row (never created, or deleted)."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"no conversation {conversation_id!r}")
        self.conversation_id = conversation_id


class ProviderError(RetouchError):
    kind = "provider_error"

    def __init__(self, provider: str, detail: str, *, status_code: int | None = None) -> None:
        self.detail = redact(detail).strip().rstrip(".")  # it is quoted inside our own sentences
        super().__init__(self.detail)
        self.provider = provider
        self.status_code = status_code

    def hide(self, secret: str) -> None:
        """Take the key the call used out of ``detail`` too (the client knows it; a pattern may not)."""
        self.detail = redact(self.detail, secret)
        self.args = (self.detail,)

    @property
    def provider_name(self) -> str:
        return PROVIDER_NAMES.get(self.provider, self.provider)

    def user_message(self) -> str:
        return f"{self.provider_name} failed: {self.detail}"


class AuthError(ProviderError):
    kind = "auth"

    def user_message(self) -> str:
        return (
            f"{self.provider_name} rejected the API key ({self.detail}). "
            "Check the key in your environment or settings."
        )


class MissingKeyError(AuthError):
    """No key configured at all: nothing was sent."""

    def user_message(self) -> str:
        return (
            f"No {self.provider_name} API key is set, so nothing was sent. Paste your own key under "
            f"\u201cYour API keys\u201d (or start Retouch with {self.detail}=\u2026) and press Retry."
        )


class BadRequestError(ProviderError):
    kind = "bad_request"

    def user_message(self) -> str:
        return f"{self.provider_name} could not accept this request: {self.detail}"


class RateLimitedError(ProviderError):
    kind = "rate_limited"

    def __init__(
        self, provider: str, detail: str, *, status_code: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(provider, detail, status_code=status_code)
        self.retry_after = retry_after

    def user_message(self) -> str:
        wait = f" Try again in about {self.retry_after:.0f} s." if self.retry_after else " Try again shortly."
        return f"{self.provider_name} is rate-limiting requests ({self.detail}).{wait}"


class UnavailableError(ProviderError):
    kind = "unavailable"

    def user_message(self) -> str:
        return f"{self.provider_name} is unavailable right now ({self.detail}). Press Retry in a moment."


class ProviderTimeoutError(ProviderError):
    kind = "timeout"

    def user_message(self) -> str:
        return f"{self.provider_name} did not answer in time ({self.detail}). Press Retry to try again."


class BlockedError(ProviderError):
    kind = "blocked"

    def __init__(self, provider: str, detail: str, *, reason: str, status_code: int | None = None) -> None:
        super().__init__(provider, detail, status_code=status_code)
        self.reason = reason

    def user_message(self) -> str:
        return (
            f"{self.provider_name} refused this request for safety ({self.reason}). "
            "Rephrase the request or use a different image."
        )


class NoImageError(ProviderError):
    kind = "no_image"

    def __init__(self, provider: str, detail: str, *, reply: ProviderReply | None = None) -> None:
        super().__init__(provider, detail)
        self.reply = reply

    def user_message(self) -> str:
        return (
            f"{self.provider_name} answered without an image ({self.detail}). "
            "Ask explicitly for an image, e.g. \u201cedit the image to …\u201d."
        )


class StoppedReading(Exception):
    """A provider call was stopped while its stream was read (chat/providers/sse.py); the caller's
    task is cancelled already, so nobody shows or logs it: it only ends the worker thread's call."""
