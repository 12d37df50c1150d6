"""A bounded read-through disk cache of a remote store's images, one per replica.

Gradio serves files, so an image kept in object storage must become a local file before a
page can show it. Each image enters the cache once, whole: its bytes are checked against the
sha256 they were asked for (``CorruptImageError`` otherwise, and nothing is written), written
0600 under a temporary name and renamed into place, so a reader never sees part of one. The
cache is a folder (0700) under the data directory; its size is bounded: once the files in it
pass ``max_bytes``, the least recently used go (a hit renews a file's time) until it is back
under nine tenths of the bound. Content addressing makes every copy correct forever, so no entry
is ever stale; one replica's cache needs nothing from another's.

Staged copies (chat/ui/files.py) are hard links to cached files: evicting a file that is
staged removes its name here only, and the staging sweep removes the rest within the hour.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import threading
import time
from pathlib import Path

from chat.errors import CorruptImageError
from storage.blobs import blob_name, sha_of_name

__all__ = ["BlobCache"]

log = logging.getLogger("retouch.storage")
_FILE_MODE = 0o600
_DIR_MODE = 0o700
_PARTIAL = ".part"
_LOW_WATER = 0.9
_STALE_PARTIAL_S = 3600


class BlobCache:
    def __init__(self, root: Path, *, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("the cache needs room for at least one image")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        os.chmod(self.root, _DIR_MODE)
        self._lock = threading.Lock()
        self._bytes = sum(size for _, size, _ in self._entries(remove_partial=True))

    @property
    def size_bytes(self) -> int:
        """What the cached files take, as this process counts them."""
        return self._bytes

    def get(self, sha256: str, mime_type: str) -> Path | None:
        """The cached file, its time renewed (recently used), or None."""
        path = self.root / blob_name(sha256, mime_type)
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def add(self, sha256: str, mime_type: str, data: bytes) -> Path:
        """``data`` as the cached file of ``sha256``, after checking that it is that image."""
        target = self.root / blob_name(sha256, mime_type)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise CorruptImageError("get")
        if self.get(sha256, mime_type) is not None:
            return target
        target.parent.mkdir(mode=_DIR_MODE, exist_ok=True)
        partial = target.with_name(f".{secrets.token_hex(8)}{_PARTIAL}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(partial, target)  # whole or not at all; a copy from another thread is the same bytes
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        with self._lock:
            self._bytes += len(data)
            if self._bytes > self.max_bytes:
                self._evict(keep=target)
        return target

    def discard(self, name: str) -> None:
        """Forget an image by its ``blob_name`` (the store deleted it)."""
        if sha_of_name(name) is None:
            raise ValueError(f"not an image name: {name!r}")
        path = self.root / name
        with contextlib.suppress(FileNotFoundError):
            size = path.stat().st_size
            path.unlink()
            with self._lock:
                self._bytes -= size

    def _evict(self, *, keep: Path) -> None:
        """Least recently used first, down to nine tenths of the bound; the lock is held."""
        entries = sorted(self._entries(), key=lambda entry: entry[2])
        total = sum(size for _, size, _ in entries)
        goal = int(self.max_bytes * _LOW_WATER)
        removed = 0
        for path, size, _ in entries:
            if total <= goal:
                break
            if path == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                total -= size
                removed += 1
        self._bytes = total
        log.info(
            "image cache over %d MB: %d least recently used images evicted", self.max_bytes >> 20, removed
        )

    def _entries(self, *, remove_partial: bool = False) -> list[tuple[Path, int, float]]:
        """Every cached file: (path, size, last used); leftovers of a crash go if ``remove_partial``."""
        found: list[tuple[Path, int, float]] = []
        for folder in os.scandir(self.root):
            if not folder.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(folder.path):
                try:
                    info = entry.stat(follow_symlinks=False)
                    if entry.name.endswith(_PARTIAL):
                        # a crash's leftover; a young one may be another process's write in progress
                        if remove_partial and info.st_mtime < time.time() - _STALE_PARTIAL_S:
                            os.unlink(entry.path)
                        continue
                except FileNotFoundError:
                    continue
                found.append((Path(entry.path), info.st_size, info.st_mtime))
        return found
