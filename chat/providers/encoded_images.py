"""Base64 text of replayed images, kept between turns.

Every Gemini turn re-sends the last K images as base64 inside the JSON body: the same images
turn after turn, each read from disk and encoded again (a 1024x1024 PNG is 2-3 MB).
Images are content-addressed and never change, so their text is kept by sha256, least
recently used first out, within a bound on the characters held. An answer's image arrives as
base64 text already: the adapter keeps that text (``keep``), so the next turn, which replays
it, neither reads the image back nor encodes it again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import pybase64

from chat.domain import ImagePart

__all__ = ["DEFAULT_MAX_CHARS", "EncodedImages"]

#: 64 MB of text: the two latest images of ten busy 1K conversations.
DEFAULT_MAX_CHARS = 64 * 1024 * 1024


class EncodedImages:
    """A bounded, thread-safe LRU of ``sha256 -> base64 text`` (requests are built in worker threads)."""

    def __init__(self, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self._max_chars = max_chars
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._texts)

    def text(self, part: ImagePart, load_image: Callable[[ImagePart], bytes]) -> str:
        """The image's base64 text, encoded from ``load_image`` only when not held."""
        with self._lock:
            text = self._texts.get(part.sha256)
            if text is not None:
                self._texts.move_to_end(part.sha256)
                return text
        text = pybase64.b64encode_as_string(load_image(part))

        self.keep(part.sha256, text)
        return text

    def keep(self, sha256: str, text: str) -> None:
        """Hold ``text``, the standard base64 of the image whose content address is ``sha256``."""
        if len(text) > self._max_chars:
            return
        with self._lock:
            if sha256 in self._texts:  # another thread encoded it meanwhile
                return
            self._texts[sha256] = text
            self._chars += len(text)
            while self._chars > self._max_chars:
                _, dropped = self._texts.popitem(last=False)
                self._chars -= len(dropped)
