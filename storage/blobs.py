"""Content-addressed image files: the bytes the database rows point at by sha256.

An image is stored once, under the hash of its bytes, so the same upload or the same model
output referenced by many turns costs one file. Files are written to a temporary name in the
target directory, fsynced and renamed into place, so a crash never leaves a half-written image
under a real name. The hash is validated before it becomes part of a path: a row (or a
request) can never point outside ``root``.

A file's modification time says when it was last put: putting bytes that are already stored
renews it, and the orphan sweep (``remove_stale``) deletes only files older than its grace, so
a file a turn is about to refer to again is never taken from under it, on any replica.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import tempfile
from pathlib import Path

from chat.domain import extension_for

__all__ = ["BlobStore", "validate_sha256"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_MODE = 0o600
_DIR_MODE = 0o700


def validate_sha256(sha256: str) -> str:
    """Return ``sha256`` if it is exactly 64 lowercase hex characters, else raise ValueError."""
    if not isinstance(sha256, str) or _SHA256.fullmatch(sha256) is None:
        raise ValueError(f"not a lowercase sha256 hex digest: {sha256!r}")
    return sha256


class BlobStore:
    """Image bytes on disk at ``root/<sha[:2]>/<sha>.<ext>``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str, mime_type: str) -> Path:
        validate_sha256(sha256)
        return self.root / sha256[:2] / f"{sha256}.{extension_for(mime_type)}"

    def exists(self, sha256: str, mime_type: str) -> bool:
        return self.path(sha256, mime_type).is_file()

    def read(self, sha256: str, mime_type: str) -> bytes:
        """The stored bytes; FileNotFoundError if this image was never put."""
        return self.path(sha256, mime_type).read_bytes()

    def files(self) -> list[tuple[str, Path]]:
        """Every stored (sha256, path): for sweeping files no row refers to."""
        found: list[tuple[str, Path]] = []
        if not self.root.exists():
            return found
        for path in self.root.glob("??/*.*"):
            sha = path.name.split(".", 1)[0]
            if len(sha) == 64 and all(c in "0123456789abcdef" for c in sha):
                found.append((sha, path))
        return found

    def remove_stale(self, path: Path, *, older_than: float) -> bool:
        """Delete ``path`` (one of ``files()``) if it was last put before ``older_than`` (a Unix
        time); whether it went.

        The file is moved aside before it is looked at again: a ``put`` that renewed it before
        the move shows in the moved file, which then goes back; a ``put`` after the move finds
        no file and writes it anew. Either way the file is there once the ``put`` returns.
        """
        aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}.sweep")
        try:
            if path.stat().st_mtime >= older_than:
                return False
            os.rename(path, aside)
        except FileNotFoundError:
            return False
        if aside.stat().st_mtime >= older_than:
            with contextlib.suppress(FileExistsError):  # put again meanwhile, as a new file
                os.link(aside, path)
            aside.unlink()
            return False
        aside.unlink()
        return True

    def put(self, data: bytes, mime_type: str) -> str:
        """Store ``data`` (once) and return its sha256 hex digest."""
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256, mime_type)
        try:
            os.utime(target)  # stored already: put again now (see the module docstring)
            return sha256
        except FileNotFoundError:
            pass
        self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        target.parent.mkdir(mode=_DIR_MODE, exist_ok=True)
        _write_atomically(target, data)
        return sha256


def _write_atomically(target: Path, data: bytes) -> None:
    # mkstemp creates the file with mode 0o600; chmod anyway in case a platform differs.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            os.fchmod(tmp.fileno(), _FILE_MODE)
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories can't be opened."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
