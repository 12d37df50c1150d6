"""The base64 cache of replayed images: encoded once per sha256, bounded, safe across threads."""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from chat.domain import ImagePart
from chat.providers.encoded_images import EncodedImages


def part(data: bytes) -> ImagePart:
    return ImagePart(hashlib.sha256(data).hexdigest(), "image/png")


class Loader:
    def __init__(self, images: dict[str, bytes]) -> None:
        self._images = images
        self.reads: Counter[str] = Counter()

    def __call__(self, image: ImagePart) -> bytes:
        self.reads[image.sha256] += 1
        return self._images[image.sha256]


def loader_for(*datas: bytes) -> Loader:
    return Loader({part(d).sha256: d for d in datas})


def test_an_image_is_read_and_encoded_once() -> None:
    data = b"\x89PNG" + bytes(range(256)) * 10
    load = loader_for(data)
    encoded = EncodedImages()
    assert encoded.text(part(data), load) == base64.b64encode(data).decode()
    assert encoded.text(part(data), load) == base64.b64encode(data).decode()
    assert load.reads[part(data).sha256] == 1


def test_least_recently_used_images_leave_first_within_the_bound() -> None:
    a, b, c = b"a" * 300, b"b" * 300, b"c" * 300  # 400 characters of base64 each
    load = loader_for(a, b, c)
    encoded = EncodedImages(max_chars=900)
    encoded.text(part(a), load)
    encoded.text(part(b), load)
    encoded.text(part(a), load)  # a is now the most recent
    encoded.text(part(c), load)  # 1,200 characters: b goes
    assert len(encoded) == 2
    encoded.text(part(a), load)
    encoded.text(part(b), load)
    assert load.reads == {part(a).sha256: 1, part(b).sha256: 2, part(c).sha256: 1}


def test_an_image_larger_than_the_bound_is_encoded_but_not_kept() -> None:
    big = b"x" * 3000
    load = loader_for(big)
    encoded = EncodedImages(max_chars=1000)
    assert encoded.text(part(big), load) == base64.b64encode(big).decode()
    assert len(encoded) == 0


def test_threads_asking_for_the_same_image_keep_one_copy() -> None:
    data = b"y" * 30_000
    load = loader_for(data)
    encoded = EncodedImages(max_chars=50_000)  # room for one copy only, if counted once
    with ThreadPoolExecutor(8) as pool:
        texts = set(pool.map(lambda _: encoded.text(part(data), load), range(64)))
    assert texts == {base64.b64encode(data).decode()}
    other = b"z" * 6_000
    encoded.text(part(other), loader_for(other))
    assert len(encoded) == 2  # 40,000 + 8,000 characters fit: the first image was counted once
