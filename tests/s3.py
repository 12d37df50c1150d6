"""A real S3 server for the tests: moto's server mode (``moto[server]`` from PyPI) on loopback.

There is no MinIO in Debian; moto's server speaks the S3 REST API, refuses a second create-only
PUT (``If-None-Match: *``) with 412 as S3 does, and keeps everything in memory. It listens on
127.0.0.1 on a free port and stops by itself: when the test run ends (``stop``), when the process
that started it dies (``PR_SET_PDEATHSIG``), and at the latest after ``MAX_LIFETIME_S``
(``timeout``). Each test gets a bucket of its own (``fresh_bucket``).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from obstore.store import S3Store

from storage.s3 import S3BlobStore, S3Location
from tests.app_process import free_port
from tests.servers import dies_with_parent

__all__ = ["ACCESS_KEY", "REGION", "S3Server", "SECRET_KEY", "blob_store", "raw_bucket", "start_s3"]

MAX_LIFETIME_S = 3 * 60 * 60  # longer than CI's 90 minutes: a safety net, not a deadline
ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key-not-a-real-one"
REGION = "us-east-1"


@dataclass
class S3Server:
    """One running moto server; ``endpoint`` is its URL (``AWS_ENDPOINT_URL``)."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    _names: itertools.count[int]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables an app process reads to reach this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }

    def fresh_bucket(self) -> str:
        """A new, empty bucket; its name (created with a plain PUT, as any S3 client would)."""
        name = f"test-{os.getpid()}-{next(self._names)}"
        httpx.put(f"{self.endpoint}/{name}", timeout=10).raise_for_status()  # moto needs no signature
        return name

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_s3() -> S3Server:
    """Start moto's S3 server; ready to take requests when this returns."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="retouch-moto-", suffix=".log")[1])
    command = [
        "timeout", "-s", "INT", str(MAX_LIFETIME_S),
        sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=dies_with_parent(signal.SIGINT)
        )
    server = S3Server(port, process, log, itertools.count())
    _wait_until_ready(server)
    return server


def _wait_until_ready(server: S3Server, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"moto's S3 server did not start:\n{server.log.read_text(errors='replace')[-2000:]}"
            )
        try:
            httpx.get(server.endpoint, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"moto's S3 server did not answer within {timeout_s:.0f} s")


def blob_store(
    server: S3Server, bucket: str, cache_dir: Path, *, prefix: str = "images", **options: Any
) -> S3BlobStore:
    """The app's ``S3BlobStore`` on ``bucket``, as app.py connects it; no client retries (no waits)."""
    options = {"retries": 0, "timeout_s": 10.0, **options}
    return S3BlobStore.connect(S3Location(bucket, prefix), cache_dir, environ=server.env(), **options)


def raw_bucket(server: S3Server, bucket: str) -> S3Store:
    """``bucket`` as any client sees it: obstore with the test credentials, no store prefix."""
    return S3Store(
        bucket,
        endpoint=server.endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        region=REGION,
        client_options={"allow_http": True},
    )
