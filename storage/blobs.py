"""Content-addressed image bytes: what the database rows point at by sha256.

An image is stored once, under the hash of its bytes, so the same upload or the same model
output referenced by many turns costs one copy. ``BlobStore`` is what the app needs of a store;
two implement it: ``DiskBlobStore`` (here, the default) and ``S3BlobStore`` (storage/s3.py,
``RETOUCH_BLOBS=s3://bucket/prefix``). Either way the hash is validated before it becomes part of
a path or key: a row (or a request) can never name anything outside the store.

The orphan sweep (chat/server/maintenance.py) deletes only what is older than its grace. A
``put`` of bytes already stored says whether it made them young again (``Put.young``): on disk
it renews the file's time; a write-once store cannot, and the turn writer then protects the
image through the database instead (chat/conversation/turns.py).

On disk, files are written to a temporary name in the target directory, fsynced and renamed
into place, so a crash never leaves a half-written image under a real name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from chat.domain import extension_for

__all__ = ["BlobStore", "DiskBlobStore", "Put", "StoredBlob", "blob_name", "sha_of_name", "validate_sha256"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_MODE = 0o600
_DIR_MODE = 0o700


def validate_sha256(sha256: str) -> str:
    """Return ``sha256`` if it is exactly 64 lowercase hex characters, else raise ValueError."""
    if not isinstance(sha256, str) or _SHA256.fullmatch(sha256) is None:
        raise ValueError(f"not a lowercase sha256 hex digest: {sha256!r}")
    return sha256


def blob_name(sha256: str, mime_type: str) -> str:
    """``<sha[:2]>/<sha>.<ext>``: where an image lives inside any store (a path or a key)."""
    validate_sha256(sha256)
    return f"{sha256[:2]}/{sha256}.{extension_for(mime_type)}"


def sha_of_name(name: str) -> str | None:
    """The sha256 of a ``blob_name`` (``ab/ab12….png``), or None for anything else."""
    folder, _, file = name.rpartition("/")
    sha = file.split(".", 1)[0]
    if "." not in file or _SHA256.fullmatch(sha) is None or folder.rpartition("/")[2] != sha[:2]:
        return None
    return sha


class Put(NamedTuple):
    """What a ``put`` did: the bytes' sha256, and whether they are young for the orphan sweep
    now (written just now, or their age renewed); False only where the bytes were stored
    already and the store cannot renew them (write-once)."""

    sha256: str
    young: bool


@dataclass(frozen=True)
class StoredBlob:
    """One stored image as the sweep sees it: its hash, where it is, when it was last put (Unix time)."""

    sha256: str
    key: str
    modified: float


class BlobStore(Protocol):
    """What the app needs of an image store. Every call blocks: callers run it in a worker
    thread (the turn writer, the providers' image loads and the UI's file staging already do).
    Failures to reach a remote store raise ``StorageUnavailableError``; an image never put
    raises ``FileNotFoundError``."""

    def put(self, data: bytes, mime_type: str) -> Put:
        """Store ``data`` once; never overwrites what is stored under its hash."""
        ...

    def read(self, sha256: str, mime_type: str) -> bytes: ...

    def exists(self, sha256: str, mime_type: str) -> bool:
        """Whether the store itself holds the image (not a local copy of it)."""
        ...

    def local_path(self, sha256: str, mime_type: str) -> Path:
        """A local file with the image's bytes, for what must be served as a file (Gradio)."""
        ...

    def stored(self) -> list[StoredBlob]:
        """Every stored image, for sweeping those no row refers to."""
        ...

    def remove(self, blob: StoredBlob, *, older_than: float) -> bool:
        """Delete ``blob`` (one of ``stored()``) if it was last put before ``older_than``; whether it went."""
        ...

    def healthy(self) -> bool:
        """Whether the store answers, cheaply enough for every health probe."""
        ...


class DiskBlobStore:
    """Image bytes on disk at ``root/<sha[:2]>/<sha>.<ext>``.

    A file's modification time says when it was last put: putting bytes that are already
    stored renews it, so a file a turn is about to refer to again is never taken from under it
    (``remove``), on any replica sharing the directory.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str, mime_type: str) -> Path:
        return self.root / blob_name(sha256, mime_type)

    def local_path(self, sha256: str, mime_type: str) -> Path:
        return self.path(sha256, mime_type)

    def healthy(self) -> bool:
        return not self.root.exists() or os.access(self.root, os.W_OK | os.X_OK)

    def exists(self, sha256: str, mime_type: str) -> bool:
        return self.path(sha256, mime_type).is_file()

    def read(self, sha256: str, mime_type: str) -> bytes:
        """The stored bytes; FileNotFoundError if this image was never put."""
        return self.path(sha256, mime_type).read_bytes()

    def stored(self) -> list[StoredBlob]:
        found: list[StoredBlob] = []
        if not self.root.exists():
            return found
        for path in self.root.glob("??/*.*"):
            sha = sha_of_name(f"{path.parent.name}/{path.name}")
            if sha is not None:
                with contextlib.suppress(FileNotFoundError):  # swept or renamed meanwhile
                    found.append(StoredBlob(sha, str(path), path.stat().st_mtime))
        return found

    def remove(self, blob: StoredBlob, *, older_than: float) -> bool:
        """The file is moved aside before it is looked at again: a ``put`` that renewed it before
        the move shows in the moved file, which then goes back; a ``put`` after the move finds
        no file and writes it anew. Either way the file is there once the ``put`` returns.
        """
        path = Path(blob.key)
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

    def put(self, data: bytes, mime_type: str) -> Put:
        """Store ``data`` (once); always young: bytes already stored have their time renewed."""
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256, mime_type)
        try:
            os.utime(target)  # stored already: put again now (see the class docstring)
            return Put(sha256, young=True)
        except FileNotFoundError:
            pass
        self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        target.parent.mkdir(mode=_DIR_MODE, exist_ok=True)
        _write_atomically(target, data)
        return Put(sha256, young=True)


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
