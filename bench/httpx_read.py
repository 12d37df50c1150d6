"""CPU of httpx receiving one 3.2 MB JSON answer (what GeminiClient reads per 1K image), by read size.

A bare asyncio server in its own process answers every POST with the same ~3.2 MB JSON body;
this process posts 40 times per setting and reports its own CPU (``time.process_time``) and
wall time per response: httpx.AsyncClient (as the app uses it) and httpx.Client, each with
httpcore's default 64 KiB reads and with 1 MiB (``READ_NUM_BYTES``). Issue 12 used it to price
change 2 of RESULTS.md ("Issue 12: before").

    python -m bench.httpx_read
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import httpcore
import httpx

from tests.app_process import free_port

SERVER = r"""
import asyncio, sys
body = b'{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"' + b"A" * 3_200_000 + b'"}}]}}]}'
head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
async def handle(r, w):
    try:
        while True:
            data = await r.readuntil(b"\r\n\r\n")
            if b"content-length:" in data.lower():
                await r.readexactly(int(data.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
            w.write(head + body)
            await w.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        w.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""
SIZES = (64 * 1024, 1 << 20)
N = 40


async def async_reads(url: str) -> tuple[float, float]:
    async with httpx.AsyncClient() as client:
        await client.post(url, content=b"{}")
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(N):
            assert len((await client.post(url, content=b"{}")).content) > 3_000_000
        return (time.process_time() - cpu) / N * 1000, (time.perf_counter() - wall) / N * 1000


def sync_reads(url: str) -> tuple[float, float]:
    with httpx.Client() as client:
        client.post(url, content=b"{}")
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(N):
            assert len(client.post(url, content=b"{}").content) > 3_000_000
        return (time.process_time() - cpu) / N * 1000, (time.perf_counter() - wall) / N * 1000


def main() -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    url = f"http://127.0.0.1:{port}/"
    try:
        time.sleep(1.0)
        for size in SIZES:
            httpcore._async.http11.AsyncHTTP11Connection.READ_NUM_BYTES = size
            httpcore._sync.http11.HTTP11Connection.READ_NUM_BYTES = size
            for kind, (cpu, wall) in (("async", asyncio.run(async_reads(url))), ("sync", sync_reads(url))):
                print(f"{kind:5} reads of {size:>7} B: CPU {cpu:.2f} ms/response, wall {wall:.2f} ms")  # noqa: T201
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
