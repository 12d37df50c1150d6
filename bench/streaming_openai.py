"""App CPU per OpenAI turn, streamed (2 drafts) against plain: ``python -m bench.streaming_openai``.

The emulator runs in its own process, so this process's CPU time (``time.process_time``, every
thread: the worker's POST, the stream's reads, base64 and JSON of the drafts and the image) is
the app's share of a turn. Each turn is a 1024x1024 edit of the same photo (``PHOTO``), as the fallback
sends it; the drafts are decoded, as they are when a progress sink watches. The budget (issue
15): streaming adds at most 5 ms of app CPU per turn. Also printed: the time to the first draft
and to the answer with ``--latency-ms`` spread over the events by the emulator.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import subprocess
import sys
import time

import httpx
from pydantic import SecretStr

from chat.domain import GenerationOptions, ImagePart, OpenAIOptions, Phase, Progress, Role, TextPart, Turn
from chat.providers.openai import OpenAIImagesClient
from tests.pictures import encode, noise

#: The previous answer: a 1024x1024 photo-like PNG (noise does not compress, as photos barely do),
#: so the edited answer and its drafts are the size real ones are (~3 MB each).
PHOTO = encode(noise((1024, 1024)), "PNG")
PHOTO_PART = ImagePart(hashlib.sha256(PHOTO).hexdigest(), "image/png")
HISTORY = [
    Turn(role=Role.USER, parts=(TextPart("a street at noon"),)),
    Turn(role=Role.ASSISTANT, parts=(PHOTO_PART,), provider="gemini", model="gemini-3.1-flash-image"),
    Turn(role=Role.USER, parts=(TextPart("make it dusk"),)),
]


def load(_part: ImagePart) -> bytes:
    return PHOTO


OPTIONS = GenerationOptions(
    model="gemini-3.1-flash-image", openai=OpenAIOptions(model="gpt-image-2", size="1024x1024", quality="low")
)


def start_emulator(latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.emulator", "--port", "0", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, line.rsplit(" ", 1)[1].strip()


async def turns(
    url: str, *, stream: bool, count: int, partials: int = 2
) -> tuple[list[float], list[float], list[float]]:
    """CPU seconds of each turn, and wall seconds to the first draft and to the answer."""
    cpu, first_draft, answered = [], [], []
    with httpx.Client() as http:
        client = OpenAIImagesClient(
            http, api_key=SecretStr("k"), base_url=f"{url}/v1", stream=stream, partial_images=partials
        )
        for _ in range(count):
            started, wall = time.process_time(), time.monotonic()
            drafts: list[float] = []

            def watch(snapshot: Progress, drafts: list[float] = drafts, wall: float = wall) -> None:
                if snapshot.phase is Phase.DRAFT:
                    drafts.append(time.monotonic() - wall)

            await client.reply(HISTORY, OPTIONS, load, progress=watch)
            cpu.append(time.process_time() - started)
            answered.append(time.monotonic() - wall)
            if drafts:
                first_draft.append(drafts[0])
    return cpu, first_draft, answered


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streaming_openai", description=__doc__)
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--partial-images", type=int, default=2, help="drafts per streamed turn (1-3)")
    args = parser.parse_args(argv)
    process, url = start_emulator(args.latency_ms)
    try:
        asyncio.run(turns(url, stream=True, count=3))  # warm up: imports, connections, caches
        results = {}
        for stream in (False, True, False, True):  # interleaved, so drift hits both alike
            cpu, first, answered = asyncio.run(
                turns(url, stream=stream, count=args.turns, partials=args.partial_images)
            )
            results.setdefault(stream, ([], [], []))
            for into, values in zip(results[stream], (cpu, first, answered), strict=True):
                into.extend(values)
    finally:
        process.terminate()
        process.wait(10)
    for stream, (cpu, first, answered) in sorted(results.items()):
        label = f"streamed ({args.partial_images} drafts)" if stream else "plain"
        draft = f", first draft {statistics.median(first) * 1000:.0f} ms" if first else ""
        print(  # noqa: T201
            f"{label:>20}: app CPU per turn median {statistics.median(cpu) * 1000:.1f} ms "
            f"(mean {statistics.mean(cpu) * 1000:.1f}), answer {statistics.median(answered) * 1000:.0f} ms{draft}"
        )
    added = statistics.median(results[True][0]) - statistics.median(results[False][0])
    print(f"streaming adds {added * 1000:.1f} ms of app CPU per turn (budget 5 ms)")  # noqa: T201


if __name__ == "__main__":
    main()
