"""Files the page offers: chat images, thumbnails, before/after pairs, PNG downloads and exports.

The blob store is never served: nothing puts it in Gradio's ``allowed_paths``, so no URL can
name a master. A handler that has checked the visitor's access hands Gradio a private staged
copy instead (a hard link where the file system allows, so it costs no bytes), and Gradio
copies that into its own cache, from where the browser fetches it. Staged files and
downloads live in a private folder (0700) and are swept after an hour unused.

Where images are kept in object storage, ``image_path`` fetches into the replica's cache first,
so every method here blocks: handlers call them in a worker thread. While the image store does
not answer, a page shows a grey tile for an image this replica has no copy of (the chat still
opens, and says so when a turn needs the store); a download says why it failed instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from chat.domain import Conversation, ImageData, ImagePart
from chat.errors import StorageUnavailableError

__all__ = ["FileMaker"]

KEEP_SECONDS = 3600
DRAFT_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
THUMBNAIL_SIDE = (
    256  # "My conversations" shows small tiles: a 3 MB master there costs Gradio a hash per render
)


class FileMaker:
    def __init__(self, image_path: Callable[[ImagePart], Path], root: Path) -> None:
        self._image_path = image_path
        self._root = root
        self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._staged = self._root / "images"
        self._staged.mkdir(exist_ok=True, mode=0o700)
        self._placeholder = self._root / "no-image.png"
        if not self._placeholder.exists():
            Image.new("RGB", (64, 64), (225, 225, 225)).save(self._placeholder)

    def image(self, part: ImagePart) -> str:
        """A private copy of a stored image for Gradio to serve: call only after checking access."""
        try:
            return self.download(part)
        except StorageUnavailableError:
            return str(self._placeholder)

    def download(self, part: ImagePart) -> str:
        """Like ``image``, but StorageUnavailableError when the image store cannot give it."""
        source = self._image_path(part)

        def link(partial: Path) -> None:
            try:
                os.link(source, partial)
            except OSError:  # another file system, or links not allowed: copy the bytes
                shutil.copyfile(source, partial)

        return self._staged_file(source.name, link)

    def thumbnail(self, part: ImagePart | None) -> str:
        """A small WebP of a stored image (made once, then reused like a staged copy): call after checking access."""
        if part is None:
            return str(self._placeholder)
        try:
            source = self._image_path(part)
        except StorageUnavailableError:
            return str(self._placeholder)

        def shrink(partial: Path) -> None:
            with Image.open(source) as image:
                small = image.convert(
                    "RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB"
                )
                small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                small.save(partial, format="WEBP", quality=80)

        return self._staged_file(f"thumbnail-{part.sha256}.webp", shrink)

    def draft(self, image: ImageData) -> str:
        """A running call's draft (shown, never stored) as a staged file named by its sha256, swept
        like the others: the page shows it until the stored answer replaces it."""
        suffix = DRAFT_SUFFIXES.get(image.mime_type, ".bin")

        def write(partial: Path) -> None:
            partial.write_bytes(image.data)

        return self._staged_file(f"draft-{image.sha256}{suffix}", write)

    def _staged_file(self, name: str, write: Callable[[Path], None]) -> str:
        """``name`` in the staging folder: touched if there (in use again: not swept for another
        hour), else written by ``write`` under a temporary name and moved into place whole."""
        target = self._staged / name
        try:
            os.utime(target)
            return str(target)
        except FileNotFoundError:
            pass
        partial = self._staged / f".{secrets.token_hex(8)}.part"
        write(partial)
        os.replace(partial, target)
        return str(target)

    def compare(self, conversation: Conversation | None, index: int | None) -> tuple[str, str] | None:
        """(the image before this version, this version) for the before/after slider."""
        if conversation is None or index is None or not 0 <= index < len(conversation.turns):
            return None
        after = conversation.turns[index].shown_image()
        before = Conversation(conversation.id, conversation.title, conversation.turns[:index]).latest_image()
        if after is None:
            return None
        return (self.image(before or after), self.image(after))

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
            if folder.is_dir() and folder != self._staged and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        for staged in self._staged.iterdir():
            if staged.stat().st_mtime < cutoff:
                staged.unlink(missing_ok=True)
