"""S3BlobStore against a real S3 server (moto, tests/s3.py): keys, write-once, the cache, failures."""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import obstore
import pytest

from chat.errors import CorruptImageError, StorageUnavailableError
from storage import Put, StoredBlob
from storage.s3 import HEALTH_TTL_S, S3BlobStore, S3Location
from tests.app_process import free_port
from tests.pictures import png
from tests.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, blob_store, raw_bucket

PNG = png((10, 20, 30))
SHA = hashlib.sha256(PNG).hexdigest()


@pytest.fixture
def store(s3: S3Server, s3_bucket: str, tmp_path: Path) -> S3BlobStore:
    return blob_store(s3, s3_bucket, tmp_path / "cache")


def test_moto_refuses_a_second_create_only_put_with_412(s3: S3Server, s3_bucket: str) -> None:
    """What the store relies on, seen by another client (boto3, which moto brings): S3's answer."""
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    )
    client.put_object(Bucket=s3_bucket, Key="some-key", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=s3_bucket, Key="some-key", Body=b"second", IfNoneMatch="*")

    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert client.get_object(Bucket=s3_bucket, Key="some-key")["Body"].read() == b"first"


def test_put_stores_under_the_content_address_and_reads_back(
    store: S3BlobStore, s3: S3Server, s3_bucket: str
) -> None:
    assert store.put(PNG, "image/png") == Put(SHA, young=True)

    [listed] = [meta for chunk in obstore.list(raw_bucket(s3, s3_bucket)) for meta in chunk]
    assert listed["path"] == f"images/{SHA[:2]}/{SHA}.png"
    assert store.read(SHA, "image/png") == PNG
    assert store.exists(SHA, "image/png")


def test_a_second_put_is_success_but_never_overwrites_nor_makes_it_young(
    store: S3BlobStore, s3: S3Server, s3_bucket: str
) -> None:
    store.put(PNG, "image/png")
    key = f"images/{SHA[:2]}/{SHA}.png"
    before = obstore.head(raw_bucket(s3, s3_bucket), key)

    assert store.put(PNG, "image/png") == Put(SHA, young=False)
    assert obstore.head(raw_bucket(s3, s3_bucket), key)["e_tag"] == before["e_tag"]
    assert obstore.head(raw_bucket(s3, s3_bucket), key)["last_modified"] == before["last_modified"]


def test_another_replica_fetches_once_into_its_own_cache(
    store: S3BlobStore, s3: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    store.put(PNG, "image/png")
    other = blob_store(s3, s3_bucket, tmp_path / "other-cache")
    assert other.cache.get(SHA, "image/png") is None

    path = other.local_path(SHA, "image/png")

    assert path.read_bytes() == PNG and path.is_relative_to(tmp_path / "other-cache")
    assert path.stat().st_mode & 0o777 == 0o600
    obstore.delete(
        raw_bucket(s3, s3_bucket), f"images/{SHA[:2]}/{SHA}.png"
    )  # from now on only the cache has it
    assert other.local_path(SHA, "image/png") == path
    assert other.read(SHA, "image/png") == PNG


def test_a_fetched_object_that_is_not_the_image_never_enters_the_cache(
    store: S3BlobStore, s3: S3Server, s3_bucket: str
) -> None:
    obstore.put(raw_bucket(s3, s3_bucket), f"images/{SHA[:2]}/{SHA}.png", b"tampered bytes")

    with pytest.raises(CorruptImageError):
        store.local_path(SHA, "image/png")
    assert store.cache.get(SHA, "image/png") is None
    assert store.cache.size_bytes == 0


def test_an_image_never_put_is_file_not_found(store: S3BlobStore) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()

    assert not store.exists(missing, "image/png")
    with pytest.raises(FileNotFoundError):
        store.local_path(missing, "image/png")


@pytest.mark.parametrize("bad_sha", ["../" + "a" * 61, "A" * 64, "a" * 63, "a" * 64 + "/x", ""])
def test_a_hostile_sha_never_becomes_a_key(store: S3BlobStore, bad_sha: str) -> None:
    for call in (store.local_path, store.read, store.exists):
        with pytest.raises(ValueError):
            call(bad_sha, "image/png")
    with pytest.raises(ValueError):
        store.remove(StoredBlob(bad_sha, f"{bad_sha[:2]}/{bad_sha}.png", 0.0), older_than=1.0)


def test_stored_lists_images_only_and_remove_deletes_old_ones(
    store: S3BlobStore, s3: S3Server, s3_bucket: str
) -> None:
    store.put(PNG, "image/png")
    obstore.put(raw_bucket(s3, s3_bucket), "images/notes.txt", b"not an image")
    obstore.put(raw_bucket(s3, s3_bucket), f"elsewhere/{SHA[:2]}/{SHA}.png", PNG)  # outside the prefix

    [blob] = store.stored()
    assert (blob.sha256, blob.key) == (SHA, f"{SHA[:2]}/{SHA}.png")

    assert store.remove(blob, older_than=blob.modified) is False  # not older than the cutoff
    assert store.remove(blob, older_than=blob.modified + 1) is True
    assert not store.exists(SHA, "image/png")
    assert store.cache.get(SHA, "image/png") is None
    assert obstore.head(raw_bucket(s3, s3_bucket), f"elsewhere/{SHA[:2]}/{SHA}.png")


def test_health_is_probed_at_most_once_per_ttl(s3: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    now = [1000.0]
    connected = blob_store(s3, s3_bucket, tmp_path / "cache")
    probing = S3BlobStore(
        connected._store, connected.cache, location=S3Location(s3_bucket), clock=lambda: now[0]
    )
    assert probing.healthy()
    with _dead_endpoint() as dead:
        down = S3BlobStore.connect(
            S3Location(s3_bucket),
            tmp_path / "down",
            environ={**s3.env(), "AWS_ENDPOINT_URL": dead},
            retries=0,
        )
        assert not down.healthy()
    probing._store = down._store  # the store stops answering: the last answer stands for the ttl
    assert probing.healthy()
    now[0] += HEALTH_TTL_S
    assert not probing.healthy()


# --- outages --------------------------------------------------------------------------------


@contextmanager
def _dead_endpoint() -> Iterator[str]:
    """A port nothing listens on: connection refused."""
    yield f"http://127.0.0.1:{free_port()}"


@contextmanager
def _failing_endpoint() -> Iterator[str]:
    """A server that answers every request with 503."""

    class Unavailable(BaseHTTPRequestHandler):
        def _fail(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_PUT = do_HEAD = do_DELETE = _fail

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _silent_endpoint() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("endpoint", [_dead_endpoint, _failing_endpoint, _silent_endpoint])
def test_an_unreachable_store_is_storage_unavailable_and_never_shows_a_secret(
    endpoint, s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="retouch.storage")
    with endpoint() as url:
        environ = {**s3.env(), "AWS_ENDPOINT_URL": url, "AWS_SESSION_TOKEN": "session-secret-token"}
        down = S3BlobStore.connect(
            S3Location("some-bucket", "images"), tmp_path / "cache", environ=environ, retries=0, timeout_s=1.0
        )
        calls = [
            lambda: down.put(PNG, "image/png"),
            lambda: down.local_path(SHA, "image/png"),
            lambda: down.exists(SHA, "image/png"),
            down.stored,
        ]
        for call in calls:
            with pytest.raises(StorageUnavailableError) as raised:
                call()
            message = raised.value.user_message()
            assert url not in message and "some-bucket" not in message and "Retry" in message
        assert not down.healthy()
    assert down.cache.size_bytes == 0  # nothing of a failed put is kept as if stored
    logged = caplog.text
    assert "image store s3://some-bucket/images failed" in logged
    for secret in (SECRET_KEY, "session-secret-token"):
        assert secret not in logged


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "http://bucket/x",
        "s3://UPPER/x",
        "s3://ab",
        "s3://bucket/../x",
        "s3://bucket/a b",
        "s3://b..x",
    ],
)
def test_a_bad_location_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        S3Location.parse(url)


def test_a_location_is_a_bucket_and_a_clean_prefix() -> None:
    assert S3Location.parse("s3://retouch-images") == S3Location("retouch-images", "")
    assert S3Location.parse("s3://retouch-images/team/a/") == S3Location("retouch-images", "team/a")
    assert str(S3Location.parse("s3://retouch-images//team//a")) == "s3://retouch-images/team/a"
