"""Images in S3-compatible object storage (``RETOUCH_BLOBS=s3://bucket/prefix``), shared by every replica.

Keys are content addresses, ``<prefix>/<sha[:2]>/<sha>.<ext>``, and write-once: a put is a
create-only PUT (``If-None-Match: *``), so an object is never overwritten; a 412 means the
image is stored already, which is success. Such a put cannot make the object young for the
orphan sweep (``Put.young`` is False): the turn writer and the sweep settle that through the
database (chat/conversation/turns.py, chat/server/maintenance.py).

Gradio serves files, so what a page shows goes through a bounded disk cache on each replica
(storage/blob_cache.py): fetched once, its sha256 checked before it enters. A put also fills
the cache, so the image a turn just stored is shown without a fetch; provider reads (the
history sent with a turn) go through it too.

The client is obstore (Rust, sync calls that release the GIL): on moto, with a 2.2 MB image,
it used 2.3 ms of app CPU per put and per get against boto3's 5.1 and 3.5 ms, and was no slower
(p50 put 13.4 against 16.2 ms, get 5.6 against 7.7 ms; bench/RESULTS.md, "Issue 14: S3 client"). Every call
blocks; callers already run blob I/O in worker threads. Credentials and the endpoint are the
standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION``); a failure is logged with the operation, the key and the
client's words with every credential taken out, and reaches the user as
``StorageUnavailableError``, which names nothing of the store.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import obstore
from obstore.exceptions import AlreadyExistsError, NotFoundError, PreconditionError
from obstore.store import S3Store

from chat.errors import StorageUnavailableError
from storage.blob_cache import BlobCache
from storage.blobs import Put, StoredBlob, blob_name, sha_of_name, validate_sha256

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

__all__ = ["S3BlobStore", "S3Location"]

log = logging.getLogger("retouch.storage")

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")
#: How long a health probe's answer is reused: a load balancer polling every second costs the store
#: one request per replica every this many seconds, not one per probe.
HEALTH_TTL_S: Final = 10.0
_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_HIDDEN = "[credential hidden]"


@dataclass(frozen=True)
class S3Location:
    """A bucket and the prefix the images go under (may be empty)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket`` or ``s3://bucket/some/prefix``; ValueError for anything else."""
        scheme, sep, rest = url.partition("://")
        if scheme != "s3" or not sep:
            raise ValueError("must look like s3://bucket/prefix")
        bucket, _, prefix = rest.partition("/")
        if _BUCKET.fullmatch(bucket) is None or ".." in bucket:
            raise ValueError("the bucket name must be 3-63 lowercase letters, digits, dots or hyphens")
        segments = [segment for segment in prefix.split("/") if segment]
        if any(_SEGMENT.fullmatch(s) is None or s in (".", "..") for s in segments):
            raise ValueError("the prefix may hold letters, digits, '_', '.', '-' and '/' only")
        return cls(bucket, "/".join(segments))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


class S3BlobStore:
    """``BlobStore`` on an S3 bucket, with this replica's read-through cache."""

    def __init__(
        self,
        store: S3Store,
        cache: BlobCache,
        *,
        location: S3Location,
        secrets: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cache = cache
        self._location = location
        self._secrets = tuple(s for s in secrets if s)
        self._clock = clock
        self._fetching: dict[str, threading.Lock] = {}
        self._fetching_lock = threading.Lock()
        self._health: tuple[float, bool] | None = None

    @classmethod
    def connect(
        cls,
        location: S3Location,
        cache_dir: Path,
        *,
        environ: Mapping[str, str],
        cache_bytes: int = 1024 << 20,
        timeout_s: float = 30.0,
        retries: int = 2,
    ) -> S3BlobStore:
        """The store at ``location``, reached as the AWS variables in ``environ`` say.

        ``retries`` are the client's own (5xx, connection failures; backoff from 100 ms), all
        within ``timeout_s``; a request that gets no answer in ``timeout_s`` fails.
        """
        endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
        config: S3Config = {
            "region": environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        }
        if endpoint:
            config["endpoint"] = endpoint
        for variable, name in zip(
            _CREDENTIALS, ("access_key_id", "secret_access_key", "session_token"), strict=True
        ):
            if environ.get(variable):
                config[name] = environ[variable]  # type: ignore[literal-required] # one of three known keys
        client: ClientConfig = {
            "timeout": timedelta(seconds=timeout_s),
            "connect_timeout": timedelta(seconds=min(5.0, timeout_s)),
            "allow_http": bool(endpoint and endpoint.startswith("http://")),
        }
        retry: RetryConfig = {
            "max_retries": retries,
            "retry_timeout": timedelta(seconds=timeout_s),
            "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2)},
        }
        store = S3Store(
            location.bucket,
            prefix=location.prefix or None,
            config=config,
            client_options=client,
            retry_config=retry,
        )
        cache = BlobCache(cache_dir, max_bytes=cache_bytes)
        hidden = tuple(environ.get(variable, "") for variable in _CREDENTIALS)
        return cls(store, cache, location=location, secrets=hidden)

    @property
    def cache(self) -> BlobCache:
        return self._cache

    def put(self, data: bytes, mime_type: str) -> Put:
        sha256 = hashlib.sha256(data).hexdigest()
        key = blob_name(sha256, mime_type)
        young = True
        with self._failures("put", key):
            try:
                obstore.put(self._store, key, data, mode="create", attributes={"Content-Type": mime_type})
            except (AlreadyExistsError, PreconditionError):
                young = False  # stored already, and never overwritten
        self._cache.add(sha256, mime_type, data)
        return Put(sha256, young)

    def read(self, sha256: str, mime_type: str) -> bytes:
        return self.local_path(sha256, mime_type).read_bytes()

    def local_path(self, sha256: str, mime_type: str) -> Path:
        """The cached file, fetched first if this replica has not got it (one fetch per image at a time)."""
        cached = self._cache.get(sha256, mime_type)
        if cached is not None:
            return cached
        with self._fetch_lock(sha256):
            cached = self._cache.get(sha256, mime_type)
            if cached is not None:
                return cached
            key = blob_name(sha256, mime_type)
            with self._failures("get", key):
                data = bytes(obstore.get(self._store, key).bytes())
            return self._cache.add(sha256, mime_type, data)  # CorruptImageError unless it hashes to sha256

    def exists(self, sha256: str, mime_type: str) -> bool:
        key = blob_name(sha256, mime_type)
        try:
            with self._failures("head", key):
                obstore.head(self._store, key)
        except FileNotFoundError:
            return False
        return True

    def stored(self) -> list[StoredBlob]:
        found: list[StoredBlob] = []
        with self._failures("list", ""):
            for chunk in obstore.list(self._store):
                for meta in chunk:
                    sha = sha_of_name(meta["path"])
                    if sha is not None:
                        found.append(StoredBlob(sha, meta["path"], meta["last_modified"].timestamp()))
        return found

    def remove(self, blob: StoredBlob, *, older_than: float) -> bool:
        """Deleted as listed: S3 cannot re-check an object's age and delete it in one request, so
        the sweep claims the image in the database first (chat/server/maintenance.py)."""
        validate_sha256(blob.sha256)
        if blob.modified >= older_than or sha_of_name(blob.key) != blob.sha256:
            return False
        with self._failures("delete", blob.key):
            obstore.delete(self._store, blob.key)
        self._cache.discard(blob.key)
        return True

    def healthy(self) -> bool:
        """One HEAD of a key that is never stored (404 = the store answers), at most every
        ``HEALTH_TTL_S``; in between, the last answer."""
        now = self._clock()
        if self._health is not None and now - self._health[0] < HEALTH_TTL_S:
            return self._health[1]
        try:
            with self._failures("probe", "healthz"):
                obstore.head(self._store, "healthz")
            ok = True
        except FileNotFoundError:
            ok = True  # the store answered
        except StorageUnavailableError:
            ok = False
        self._health = (now, ok)
        return ok

    @contextmanager
    def _failures(self, operation: str, key: str) -> Iterator[None]:
        """Any failure of the client but a missing object as ``StorageUnavailableError``, logged
        with every credential taken out of the client's words."""
        try:
            yield
        except (NotFoundError, FileNotFoundError):  # obstore raises either, by call
            raise FileNotFoundError(f"no stored image {key}") from None
        except (AlreadyExistsError, PreconditionError):
            raise
        except Exception as exc:
            self._unavailable(operation, key, exc)

    def _unavailable(self, operation: str, key: str, exc: Exception) -> NoReturn:
        words = str(exc).split("\n", 1)[0][:300]
        for secret in self._secrets:
            words = words.replace(secret, _HIDDEN)
        log.warning(
            "image store %s failed (%s %s): %s: %s",
            self._location,
            operation,
            key or "-",
            type(exc).__name__,
            words,
        )
        raise StorageUnavailableError(operation) from None

    @contextmanager
    def _fetch_lock(self, sha256: str) -> Iterator[None]:
        with self._fetching_lock:
            lock = self._fetching.setdefault(sha256, threading.Lock())
        try:
            with lock:
                yield
        finally:
            with self._fetching_lock:
                if not lock.locked():
                    self._fetching.pop(sha256, None)
