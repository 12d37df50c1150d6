"""Files the page offers: thumbnails, before/after pairs, PNG downloads and exports.

Masters stay where they are (the blob store); what a browser downloads is written to a
private temporary folder under a readable name, and old files there are swept away.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from chat.domain import Conversation, ImagePart

__all__ = ["FileMaker"]

KEEP_SECONDS = 3600


class FileMaker:
    def __init__(self, image_path: Callable[[ImagePart], Path], root: Path | None = None) -> None:
        self._image_path = image_path
        self._root = root or Path(tempfile.gettempdir()) / "retouch-files"
        self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._placeholder = self._root / "no-image.png"
        if not self._placeholder.exists():
            Image.new("RGB", (64, 64), (225, 225, 225)).save(self._placeholder)

    def thumbnail(self, part: ImagePart | None) -> str:
        return str(self._image_path(part)) if part else str(self._placeholder)

    def compare(self, conversation: Conversation | None, index: int | None) -> tuple[str, str] | None:
        """(the image before this version, this version) for the before/after slider."""
        if conversation is None or index is None or not 0 <= index < len(conversation.turns):
            return None
        after = conversation.turns[index].shown_image()
        before = Conversation(conversation.id, conversation.title, conversation.turns[:index]).latest_image()
        if after is None:
            return None
        return (str(self._image_path(before or after)), str(self._image_path(after)))

    def png(self, conversation: Conversation, index: int, label: str) -> str:
        """A version as a PNG file named after it (converted only if the master is not PNG)."""
        part = conversation.turns[index].shown_image()
        if part is None:
            raise LookupError(index)
        target = self._fresh_dir() / f"retouch-{label}.png"
        source = self._image_path(part)
        if part.mime_type == "image/png":
            shutil.copyfile(source, target)
        else:
            with Image.open(source) as image:
                image.save(target, format="PNG")
        return str(target)

    def save(self, name: str, data: bytes) -> str:
        target = self._fresh_dir() / name
        target.write_bytes(data)
        return str(target)

    def _fresh_dir(self) -> Path:
        self._sweep()
        folder = self._root / secrets.token_hex(8)
        folder.mkdir(mode=0o700)
        return folder

    def _sweep(self) -> None:
        cutoff = time.time() - KEEP_SECONDS
        for folder in self._root.iterdir():
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
