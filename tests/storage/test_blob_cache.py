"""BlobCache: whole files only, checked bytes, private, bounded with least-recently-used eviction."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from chat.errors import CorruptImageError
from storage.blob_cache import BlobCache


def image(n: int, size: int = 1000) -> tuple[str, bytes]:
    data = n.to_bytes(4, "big") * (size // 4)
    return hashlib.sha256(data).hexdigest(), data


def test_an_added_image_is_a_private_whole_file(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", max_bytes=10_000)
    sha, data = image(1)

    path = cache.add(sha, "image/png", data)

    assert path == tmp_path / "cache" / sha[:2] / f"{sha}.png" and path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700
    assert cache.get(sha, "image/png") == path
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left
    assert cache.size_bytes == len(data)


def test_bytes_that_are_not_the_image_never_enter(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", max_bytes=10_000)
    sha, _ = image(1)

    with pytest.raises(CorruptImageError):
        cache.add(sha, "image/png", b"something else")
    assert cache.get(sha, "image/png") is None
    assert cache.size_bytes == 0 and not any((tmp_path / "cache").rglob("*.png"))


@pytest.mark.parametrize("bad_sha", ["../" + "a" * 61, "A" * 64, "a" * 63, ""])
def test_a_hostile_sha_is_refused(tmp_path: Path, bad_sha: str) -> None:
    cache = BlobCache(tmp_path / "cache", max_bytes=10_000)

    with pytest.raises(ValueError):
        cache.get(bad_sha, "image/png")
    with pytest.raises(ValueError):
        cache.add(bad_sha, "image/png", b"x")
    with pytest.raises(ValueError):
        cache.discard(f"{bad_sha[:2]}/{bad_sha}.png")


def test_the_bound_evicts_the_least_recently_used_first(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", max_bytes=3_500)
    images = [image(n) for n in range(3)]
    for age, (sha, data) in enumerate(images):
        path = cache.add(sha, "image/png", data)
        os.utime(path, (1_000_000 + age, 1_000_000 + age))  # added in this order, long ago
    cache.get(images[0][0], "image/png")  # used again: now the most recent

    newest_sha, newest = image(3)
    cache.add(newest_sha, "image/png", newest)  # 4,000 bytes > 3,500: down to 3,150 at most

    kept = {sha for sha, _ in [*images, (newest_sha, newest)] if cache.get(sha, "image/png")}
    assert kept == {images[0][0], images[2][0], newest_sha}  # image 1 was the least recently used
    assert cache.size_bytes == 3000 <= 3_500 * 0.9


def test_one_image_larger_than_the_bound_is_still_served(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", max_bytes=500)
    sha, data = image(1)

    assert cache.add(sha, "image/png", data).read_bytes() == data


def test_a_restart_counts_what_is_there_and_clears_old_partial_files(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", max_bytes=10_000)
    sha, data = image(1)
    path = cache.add(sha, "image/png", data)
    old_partial = path.with_name(".deadbeef.part")
    old_partial.write_bytes(b"half")
    os.utime(old_partial, (1_000_000, 1_000_000))
    young_partial = path.with_name(".cafebabe.part")  # another process writing right now
    young_partial.write_bytes(b"half")

    again = BlobCache(tmp_path / "cache", max_bytes=10_000)

    assert again.size_bytes == len(data)
    assert not old_partial.exists() and young_partial.exists()


def test_discard_forgets_an_image(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", max_bytes=10_000)
    sha, data = image(1)
    cache.add(sha, "image/png", data)

    cache.discard(f"{sha[:2]}/{sha}.png")
    cache.discard(f"{sha[:2]}/{sha}.png")  # gone already: nothing to do

    assert cache.get(sha, "image/png") is None and cache.size_bytes == 0
