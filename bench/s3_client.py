"""Which S3 client for the image store, and what an image fetch through the cache costs (issue 14).

Part "clients": the same create-only PUT and GET of a 1024x1024 photo-like PNG (~2.4 MB,
``bench.common.photo``) through each candidate against moto's S3 server on loopback
(``tests/s3.py``): obstore (Rust, sync calls that release the GIL) and boto3 (pure Python over
urllib3). Both are called as the app calls its blob store, from a worker thread (the turn writer
and the providers' image loads already run in one), so the event loop never waits on either.
Per op: wall-clock p50/p90 and this process's CPU time (user + system, every thread, so obstore's
own runtime threads count) divided by the ops. moto runs in its own process: its CPU is not
counted, though it shares the 2 cores.

Part "cache": ``S3BlobStore.local_path`` (what ``ChatService.image_path`` costs): the p50 for an
image already in the replica's disk cache and for one that is not (fetched, hashed, written,
renamed into place), on a fresh cache each time.

``python -m bench.s3_client`` (``--quick`` for a smoke run); JSON in bench/results/s3_client.json.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import ForeignCpu, photo, png_bytes, summary_ms, table, wait_until_quiet, write_json
from tests.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server, raw_bucket, start_s3


def _timed(op: Callable[[int], None], count: int) -> dict[str, Any]:
    """``op(i)`` ``count`` times: wall p50/p90 per op and process CPU per op."""
    walls: list[float] = []
    cpu_start = time.process_time()
    for i in range(count):
        started = time.perf_counter()
        op(i)
        walls.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu_start
    return {**summary_ms(walls), "cpu_ms_per_op": round(cpu / count * 1000, 2)}


def _images(count: int) -> list[bytes]:
    base = png_bytes(photo(1024, seed=14))
    # Distinct bytes (and so distinct keys) for each put: a trailing chunk-free byte PNG readers ignore.
    return [base + i.to_bytes(4, "big") for i in range(count)]


def obstore_candidate(
    server: S3Server, bucket: str
) -> tuple[Callable[[str, bytes], None], Callable[[str], bytes]]:
    import obstore

    store = raw_bucket(server, bucket)

    def put(key: str, data: bytes) -> None:
        obstore.put(store, key, data, mode="create")

    def get(key: str) -> bytes:
        return bytes(obstore.get(store, key).bytes())

    return put, get


def boto3_candidate(
    server: S3Server, bucket: str
) -> tuple[Callable[[str, bytes], None], Callable[[str], bytes]]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    )

    def put(key: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")

    def get(key: str) -> bytes:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    return put, get


CANDIDATES = {"obstore": obstore_candidate, "boto3": boto3_candidate}


def clients_part(server: S3Server, count: int) -> dict[str, Any]:
    images = _images(count)
    results: dict[str, Any] = {"image_bytes": len(images[0]), "ops": count}
    for name, make in CANDIDATES.items():
        bucket = server.fresh_bucket()
        put, get = make(server, bucket)
        put("warm-up", b"x")  # connection set up, credentials resolved
        get("warm-up")
        keys = [f"images/{hashlib.sha256(data).hexdigest()}.png" for data in images]
        put_figures = _timed(lambda i: put(keys[i], images[i]), count)  # noqa: B023 - run at once
        get_figures = _timed(lambda i: get(keys[i]), count)  # noqa: B023 - run at once
        assert get(keys[0]) == images[0]
        results[name] = {"put": put_figures, "get": get_figures}
    return results


def cache_part(server: S3Server, count: int) -> dict[str, Any]:
    from storage.s3 import S3BlobStore, S3Location

    data = png_bytes(photo(1024, seed=15))
    bucket = server.fresh_bucket()
    root = Path(tempfile.mkdtemp(prefix="retouch-bench-cache-"))
    try:
        environ = server.env()
        writer = S3BlobStore.connect(S3Location(bucket, "images"), root / "writer", environ=environ)
        sha = writer.put(data, "image/png").sha256
        # a fresh store (empty cache) per fetch; its client set up before the clock starts
        fresh = [
            S3BlobStore.connect(S3Location(bucket, "images"), root / f"reader-{i}", environ=environ)
            for i in range(count)
        ]
        for store in fresh:
            store.exists(sha, "image/png")
        uncached_figures = _timed(lambda i: fresh[i].local_path(sha, "image/png"), count)
        warm = fresh[0]
        cached_figures = _timed(lambda i: warm.local_path(sha, "image/png"), count)
        assert warm.local_path(sha, "image/png").read_bytes() == data
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"image_bytes": len(data), "uncached": uncached_figures, "cached": cached_figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 ops each")
    parser.add_argument("--ops", type=int, default=40)
    parser.add_argument("--part", choices=["all", "clients", "cache"], default="all")
    args = parser.parse_args()
    count = 5 if args.quick else args.ops
    quiet = wait_until_quiet(timeout_s=5 if args.quick else 300)
    server = start_s3()
    try:
        with ForeignCpu() as foreign:
            result: dict[str, Any] = {}
            if args.part in ("all", "clients"):
                result["clients"] = clients_part(server, count)
            if args.part in ("all", "cache"):
                result["cache"] = cache_part(server, count)
    finally:
        server.stop()
    path = write_json(
        "s3_client" if args.part == "all" else f"s3_client_{args.part}",
        args.quick,
        {**result, "environment": {**quiet, **foreign.result}},
    )
    rows: list[list[object]] = [["what", "p50 ms", "p90 ms", "CPU ms/op"]]
    for name in CANDIDATES:
        for op in ("put", "get"):
            figures = result.get("clients", {}).get(name, {}).get(op)
            if figures:
                rows.append([f"{name} {op}", figures["p50_ms"], figures["p90_ms"], figures["cpu_ms_per_op"]])
    for kind in ("uncached", "cached"):
        figures = result.get("cache", {}).get(kind)
        if figures:
            rows.append(
                [f"local_path {kind}", figures["p50_ms"], figures["p90_ms"], figures["cpu_ms_per_op"]]
            )
    print(table(rows))  # noqa: T201 - a benchmark's summary
    print(path)  # noqa: T201


if __name__ == "__main__":
    main()
