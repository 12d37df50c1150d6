"""Sort py-spy samples of the app into its cost centres: where the CPU of a turn goes.

Reads the raw (collapsed) stacks ``bench.concurrency --py-spy LIMIT`` writes
(``bench/results/<name>_app_profile_<limit>.collapsed``). Best with ``--py-spy-gil``: py-spy
then samples only the thread holding the GIL, so every sample is 10 ms of the app computing
Python (a thread waiting for the GIL, a lock or a socket is not counted as busy, which
without ``--gil`` it often is). The header line of the matching ``.txt`` (the app's psutil CPU
and answers during the profiled rounds) turns shares into ms per turn; what the GIL samples
do not cover is CPU spent in native code with the GIL released (SQLite's C library, hashlib
and zlib on large buffers, file and socket system calls) or in the interpreter between
samples.

Each sample goes to one bucket: the deepest frame that matches a specific rule (Pillow,
hashing, base64, SQL, the provider's JSON, Gradio's file cache, Gradio's session state, our
view rendering, logging); failing that, the deepest frame of our own code, then of Gradio and
its ASGI stack, then the event loop and thread plumbing.

    python -m bench.cpu_breakdown bench/results/<name>_app_profile_32.collapsed[.gz] [--json OUT]

(The committed stacks are gzipped: ``gzip -k`` of what py-spy wrote.)
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from collections import Counter
from pathlib import Path

#: (bucket, regex on one frame "func (path/file.py:line)"); the deepest matching frame decides.
SPECIFIC: list[tuple[str, str]] = [
    ("PNG check / decode (Pillow)", r"\(PIL/|chat/(media/)?images\.py"),
    ("hashing (sha256)", r"hashlib|\bsha256\b|DiskBlobStore\.put .*blobs\.py"),
    ("base64 (provider exchange)", r"base64|_decode_base64|encoded_images\.py|b64"),
    ("blob file write + fsync", r"_write_atomically|_fsync_dir|storage/blobs\.py"),
    (
        "SQL (SQLAlchemy/SQLModel/sqlite3)",
        r"sqlalchemy/|sqlmodel/|sqlite3|storage/db\.py|storage/repository\.py",
    ),
    ("Gradio file cache (hash + copy)", r"processing_utils\.py|move_files_to_cache|hash_file|_move_to_cache"),
    ("Gradio session state (new session)", r"state_holder\.py"),
    ("our view / transcript rendering", r"chat/ui/render\.py|chat/ui/events\.py|chat/ui/files\.py"),
    ("logging", r"\(logging/|chat/logs?\.py"),
]
#: JSON and HTTP frames are counted by who asks for them.
PROVIDER = r"chat/providers/"
JSON = r"\(json/|orjson|JSONDecoder|json_or_none"
HTTP = r"\(httpx/|\(httpcore/|\(h11/|\(anyio/"
GRADIO = r"\(gradio/|\(gradio_client/|\(starlette/|\(fastapi/|\(uvicorn/|\(h11/|\(httptools|\(pydantic|\(sse_starlette|\(anyio/|\(orjson|\(json/|\(safehttpx/"
IDLE_LEAVES = (
    "EpollSelector.select",
    "Condition.wait",
    "_worker (concurrent/futures/thread.py:81)",
    "Lifecycle.wait_for_stop",
)
OURS = r"\(chat/|\(storage/|\(app\.py"


def bucket_of(frames: list[str]) -> str:
    in_provider = any(re.search(PROVIDER, f) for f in frames)
    for frame in reversed(frames):
        for name, pattern in SPECIFIC:
            if re.search(pattern, frame):
                return name
        if in_provider and re.search(JSON, frame):
            return "JSON decode/encode (provider exchange)"
        if in_provider and re.search(HTTP, frame):
            return "httpx to the provider (read 3.2 MB, sockets)"
    for frame in reversed(frames):
        if re.search(OURS, frame):
            return "our service code (policy, domain, limits, access)"
        if re.search(GRADIO, frame):
            return "Gradio queue / ASGI / SSE / JSON"
    return "event loop, thread pool, other"


def breakdown(stacks: Path) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    total = 0
    text = gzip.decompress(stacks.read_bytes()).decode() if stacks.suffix == ".gz" else stacks.read_text()
    for line in text.splitlines():
        stack, _, number = line.rpartition(" ")
        frames = stack.split(";")[1:]  # the first is "thread (id): name"
        if not frames or frames[-1].startswith(IDLE_LEAVES):
            continue  # a thread waiting (without --gil, py-spy may count it as busy)
        counts[bucket_of(frames)] += int(number)
        total += int(number)
    return counts, total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_breakdown", description=__doc__.split("\n")[0])
    parser.add_argument("stacks", type=Path)
    parser.add_argument("--json", type=Path, help="also write the breakdown here")
    args = parser.parse_args(argv)
    counts, total = breakdown(args.stacks)
    facts: dict = {}
    header = (
        args.stacks.with_suffix("").with_suffix(".txt")
        if args.stacks.suffix == ".gz"
        else args.stacks.with_suffix(".txt")
    )
    if header.exists() and header.read_text().startswith("{"):
        facts = json.loads(header.read_text().splitlines()[0])
    answered = facts.get("answered") or 0
    sampled_ms = total * 10 / answered if answered else None
    print(f"{args.stacks.name}: {total} samples; {facts}")  # noqa: T201
    if sampled_ms is not None:
        print(  # noqa: T201
            f"sampled (10 ms each) per answered turn: {sampled_ms:.1f} ms; psutil CPU per turn: "
            f"{facts.get('app_cpu_ms_per_turn')} ms"
        )
    rows = []
    for name, count in counts.most_common():
        share = count / max(total, 1)
        per_turn = count * 10 / answered if answered else float("nan")
        rows.append(
            {"bucket": name, "samples": count, "share": round(share, 4), "ms_per_turn": round(per_turn, 2)}
        )
        print(f"{share * 100:5.1f}%  {per_turn:6.2f} ms/turn  {name}")  # noqa: T201
    if args.json:
        args.json.write_text(json.dumps({"facts": facts, "samples": total, "buckets": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
