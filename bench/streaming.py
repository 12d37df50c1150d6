"""App CPU per Gemini turn, streamed (``streamGenerateContent?alt=sse``) vs not, same answer.

The answer is the emulator's for Pro with thoughts (thought text, one interim image, a signed
text, a signed final image), with the sizes that matter made real: a 1K image (1.5 MB of bytes,
2 MB of base64), a 1 MB signature on it and on the text, a 100 KB draft. The non-streamed turn gets
it as one JSON body, the streamed one as the emulator's chunks (tests/emulator/streaming.py), both
through ``httpx.MockTransport`` in 64 KiB reads (as httpcore reads a socket), so only the client's
own work is measured: ``time.process_time`` of the whole ``GeminiClient.reply`` (body, read, SSE,
JSON, joining, progress snapshots, parse), per turn, the two paths alternated.

    python -m bench.streaming [--turns 60]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from chat.domain import GenerationOptions, Progress, Role, TextPart, Turn
from chat.providers.gemini import GeminiClient
from tests.emulator.streaming import split

READ = 64 * 1024
MODEL = "gemini-3-pro-image"
HISTORY = [Turn(role=Role.USER, parts=(TextPart("make the sky stormy"),))]


def answer() -> dict[str, Any]:
    image = base64.b64encode(os.urandom(1_500_000)).decode()
    draft = base64.b64encode(os.urandom(100_000)).decode()
    signature = base64.b64encode(os.urandom(1_000_000)).decode()
    thoughts = "**Planning the edit**\n\nThe request is: make the sky stormy. " * 8
    parts = [
        {"text": thoughts, "thought": True},
        {"inlineData": {"mimeType": "image/jpeg", "data": draft}, "thought": True},
        {"text": "Here is the edited image.", "thoughtSignature": signature},
        {"inlineData": {"mimeType": "image/jpeg", "data": image}, "thoughtSignature": signature[::-1]},
    ]
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 1126, "totalTokenCount": 1400},
        "modelVersion": MODEL,
        "responseId": "bench",
    }


class Reads(httpx.SyncByteStream):
    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        view = memoryview(self.body)
        for start in range(0, len(view), READ):
            yield bytes(view[start : start + READ])


def transport(whole: bytes, streamed: bytes) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        if request.url.params.get("alt") == "sse":
            return httpx.Response(200, stream=Reads(streamed), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, stream=Reads(whole), headers={"content-type": "application/json"})

    return httpx.MockTransport(handler)


async def main(turns: int) -> None:
    body = answer()
    whole = orjson.dumps(body)
    chunks = split(orjson.loads(whole), signature_apart=True)
    streamed = b"".join(b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks)
    options = GenerationOptions(model=MODEL)
    newest: list[Progress] = []

    def keep_newest(snapshot: Progress) -> None:  # what the app's sink does: keep the newest
        newest[:] = [snapshot]

    with httpx.Client(transport=transport(whole, streamed)) as http:
        clients = {
            "non-streamed": GeminiClient(http, api_key=SecretStr("k"), stream=False, thoughts=True),
            "streamed": GeminiClient(http, api_key=SecretStr("k")),
        }
        cpu: dict[str, list[float]] = {name: [] for name in clients}
        for n in range(turns + 5):  # five warm-up turns each
            for name, client in clients.items():
                start = time.process_time()
                reply = await client.reply(HISTORY, options, lambda part: b"", progress=keep_newest)
                if n >= 5:
                    cpu[name].append((time.process_time() - start) * 1000)
                assert reply.final_image() is not None
    machine = (
        f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    lines = [
        machine,
        f"answer: {len(whole) / 1e6:.2f} MB as one body, {len(streamed) / 1e6:.2f} MB in {len(chunks)} events",
    ]
    for name, values in cpu.items():
        median, mean = statistics.median(values), statistics.mean(values)
        lines.append(f"{name:>13}: median {median:.2f} ms CPU per turn, mean {mean:.2f}")
    delta = statistics.median(cpu["streamed"]) - statistics.median(cpu["non-streamed"])
    lines.append(f"streaming adds {delta:+.2f} ms CPU per turn (median)")
    print("\n".join(lines))  # noqa: T201 - the bench's report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=60)
    asyncio.run(main(parser.parse_args().turns))
