"""DiskBlobStore: content addressing, atomic writes, path safety, private permissions."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from storage import DiskBlobStore, Put, StoredBlob

PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 100
LONG_AGO = 1_000_000_000.0  # a file's time in 2001


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_put_returns_sha256_and_read_round_trips(blobs: DiskBlobStore) -> None:
    sha = blobs.put(PNG, "image/png").sha256

    assert sha == hashlib.sha256(PNG).hexdigest()
    assert blobs.path(sha, "image/png") == blobs.root / sha[:2] / f"{sha}.png"
    assert blobs.exists(sha, "image/png")
    assert blobs.read(sha, "image/png") == PNG


@pytest.mark.parametrize(
    ("mime_type", "ext"),
    [
        ("image/png", "png"),
        ("image/jpeg", "jpg"),
        ("image/webp", "webp"),
        ("image/gif", "gif"),
        ("application/octet-stream", "bin"),
    ],
)
def test_extension_follows_mime_type(blobs: DiskBlobStore, mime_type: str, ext: str) -> None:
    sha = blobs.put(b"data", mime_type).sha256

    assert blobs.path(sha, mime_type).name == f"{sha}.{ext}"
    assert blobs.read(sha, mime_type) == b"data"


def test_put_is_idempotent_does_not_rewrite_and_renews_the_files_time(blobs: DiskBlobStore) -> None:
    sha = blobs.put(PNG, "image/png").sha256
    path = blobs.path(sha, "image/png")
    os.utime(path, (LONG_AGO, LONG_AGO))
    before = path.stat()

    assert blobs.put(PNG, "image/png") == Put(sha, young=True)

    after = path.stat()
    assert after.st_ino == before.st_ino and after.st_mtime > LONG_AGO  # young again for the sweep
    assert _files(blobs.root) == [path]


def test_put_leaves_no_temporary_files(blobs: DiskBlobStore) -> None:
    shas = {blobs.put(PNG + bytes([i]), "image/png").sha256 for i in range(5)}

    assert _files(blobs.root) == sorted(blobs.path(sha, "image/png") for sha in shas)


def test_failed_write_leaves_nothing_behind(blobs: DiskBlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail_replace)

    with pytest.raises(OSError, match="disk full"):
        blobs.put(PNG, "image/png")
    assert _files(blobs.root) == []


@pytest.mark.parametrize(
    "bad_sha",
    [
        "../etc/passwd",
        "../" + "a" * 61,
        "A" * 64,
        hashlib.sha256(b"x").hexdigest().upper(),
        "abc123",
        "a" * 65,
        "a" * 64 + "\n",
        "g" * 64,
        "",
    ],
)
def test_malformed_sha_is_rejected(blobs: DiskBlobStore, bad_sha: str) -> None:
    with pytest.raises(ValueError):
        blobs.path(bad_sha, "image/png")
    with pytest.raises(ValueError):
        blobs.read(bad_sha, "image/png")
    with pytest.raises(ValueError):
        blobs.exists(bad_sha, "image/png")


def test_missing_blob_raises_file_not_found(blobs: DiskBlobStore) -> None:
    sha = hashlib.sha256(b"never stored").hexdigest()

    assert not blobs.exists(sha, "image/png")
    with pytest.raises(FileNotFoundError):
        blobs.read(sha, "image/png")


def test_files_are_private(blobs: DiskBlobStore) -> None:
    sha = blobs.put(PNG, "image/png").sha256
    path = blobs.path(sha, "image/png")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(blobs.root.stat().st_mode) == 0o700


def _stored_long_ago(blobs: DiskBlobStore) -> Path:
    path = blobs.path(blobs.put(PNG, "image/png").sha256, "image/png")
    os.utime(path, (LONG_AGO, LONG_AGO))
    return path


def _blob(path: Path) -> StoredBlob:
    return StoredBlob(path.name.split(".")[0], str(path), path.stat().st_mtime)


def test_stored_lists_every_image_and_nothing_else(blobs: DiskBlobStore) -> None:
    sha = blobs.put(PNG, "image/png").sha256
    (blobs.root / sha[:2] / f".{sha}.png.1234.tmp").write_bytes(b"partial")
    (blobs.root / "zz").mkdir()
    (blobs.root / "zz" / f"{sha}.png").write_bytes(PNG)  # not where its hash puts it

    assert [(b.sha256, b.key) for b in blobs.stored()] == [(sha, str(blobs.path(sha, "image/png")))]


def test_remove_deletes_only_files_last_put_before_the_cutoff(blobs: DiskBlobStore) -> None:
    old = _stored_long_ago(blobs)
    young = blobs.path(blobs.put(PNG + b"new", "image/png").sha256, "image/png")

    stale = _blob(old)
    assert blobs.remove(_blob(young), older_than=LONG_AGO + 1) is False
    assert blobs.remove(stale, older_than=LONG_AGO + 1) is True
    assert blobs.remove(stale, older_than=LONG_AGO + 1) is False  # gone already
    assert _files(blobs.root) == [young]


def test_a_put_while_the_sweep_removes_the_file_keeps_it(
    blobs: DiskBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another replica's turn puts the same image again between the sweep's look and its move
    (first), or just after the move (second): the file is there when ``put`` has returned."""
    move = os.rename
    for put_before_the_move in (True, False):
        path = _stored_long_ago(blobs)

        def racing_move(source: Path, target: Path, *, first: bool = put_before_the_move) -> None:
            if first:
                blobs.put(PNG, "image/png")
            move(source, target)
            if not first:
                blobs.put(PNG, "image/png")

        monkeypatch.setattr(os, "rename", racing_move)
        blobs.remove(_blob(path), older_than=LONG_AGO + 1)
        monkeypatch.setattr(os, "rename", move)

        assert blobs.read(hashlib.sha256(PNG).hexdigest(), "image/png") == PNG
        assert _files(blobs.root) == [path]  # nothing left aside
