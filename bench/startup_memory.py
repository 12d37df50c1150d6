"""Cold start and resident memory of ``python app.py``. Target: RSS < 400 MB with 1,000 conversations.

How:

- Cold start: the time from spawning ``python app.py`` (fresh data directory, pointed at an
  emulator) to the first HTTP 200 of ``/`` and of ``/healthz``, both polled every 10 ms.
  Measured ``--starts`` times (default 5); with ``--drop-caches`` (root) the kernel's page
  cache is dropped before the first start, so it also reads Python, Gradio and their
  dependencies from disk (the others start with a warm cache, like a restart).
- Memory: the app process's RSS (psutil; also its peak, VmHWM) 2 s after it answered,
  idle; then with 1,000 conversations stored for one owner (written before the start
  with ``storage.repository``: each 4 turns, user photo + text, answers with text, image
  and a thought signature, 4 small PNGs shared by hash), after loading ``/`` and calling
  ``/conversations`` for that owner through gradio_client.

Writes ``bench/results/startup_memory.json`` and ``startup_memory.png``.

    python -m bench.startup_memory [--quick] [--starts N] [--conversations N] [--drop-caches]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
from gradio_client import Client

from bench.common import (
    AppProcess,
    ForeignCpu,
    app_process,
    emulator_process,
    photo,
    png_bytes,
    pyplot,
    result_path,
    save_figure,
    table,
    wait_until_quiet,
    write_json,
)
from chat.config import DEFAULTS
from chat.domain import ImagePart, Role, TextPart, Turn, frozen_metadata
from storage import DiskBlobStore, make_engine, migrate, session_scope, sqlite_url
from storage import repository as repo

NAME = "startup_memory"
TARGET_MB = 400.0
OWNER = "bench-owner-with-a-thousand-conversations"
SETTLE_S = 2.0
MB = 1024 * 1024


def rss(pid: int) -> dict[str, float]:
    """Resident memory of the process and any children, and the process's peak (VmHWM)."""
    process = psutil.Process(pid)
    total = process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))
    peak_kb = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                peak_kb = int(line.split()[1])
    return {"rss_mb": round(total / MB, 1), "peak_rss_mb": round(peak_kb / 1024, 1)}


def drop_page_cache() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def first_200s(app: AppProcess, timeout_s: float = 120) -> dict:
    """Seconds from spawn to the first 200 of / and of /healthz (polled every 10 ms)."""
    found: dict[str, float] = {}
    deadline = time.perf_counter() + timeout_s
    with httpx.Client(timeout=10) as client:
        while len(found) < 2:
            if app.process.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError("the app did not start:\n" + app.log_path.read_text()[-3000:])
            for path in ("/", "/healthz"):
                if path in found:
                    continue
                try:
                    if client.get(app.url + path).status_code == 200:
                        found[path] = time.perf_counter() - app.spawned_at
                except httpx.TransportError:
                    pass
            time.sleep(0.01)
    return {"page_s": round(found["/"], 3), "healthz_s": round(found["/healthz"], 3)}


def populate(data_dir: Path, conversations: int) -> dict[str, Any]:
    """``conversations`` conversations of 4 turns for OWNER, sharing 4 small images by hash."""
    engine = make_engine(sqlite_url(data_dir))
    migrate(engine)
    blobs = DiskBlobStore(data_dir / "images")
    pictures = [png_bytes(photo(256, seed=50 + i)) for i in range(4)]
    shas = [blobs.put(data, "image/png").sha256 for data in pictures]
    signature = frozen_metadata({"gemini": {"thoughtSignature": "UlRFTVUx" + "A" * 340}})
    start = datetime(2026, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    batch = 100
    for first in range(0, conversations, batch):
        with session_scope(engine) as session:
            for sha, data in zip(shas, pictures, strict=True):
                repo.save_image(
                    session=session,
                    sha256=sha,
                    mime_type="image/png",
                    width=256,
                    height=256,
                    size_bytes=len(data),
                    now=start,
                )
            for index in range(first, min(first + batch, conversations)):
                now = start + timedelta(minutes=index)
                conversation_id = f"bench-{index:05d}-conversation"
                repo.create_conversation(
                    session=session,
                    conversation_id=conversation_id,
                    title=f"Edit number {index}: make the sky stormy",
                    now=now,
                    owner_id=OWNER,
                )
                for turn in _turns(shas, index, signature, now):
                    repo.append_turn(session=session, conversation_id=conversation_id, turn=turn, now=now)
    engine.dispose()
    return {
        "conversations": conversations,
        "turns": conversations * 4,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _turns(shas: list[str], index: int, signature: Any, now: datetime) -> list[Turn]:
    usage = frozen_metadata({"promptTokenCount": 1200, "candidatesTokenCount": 1130, "totalTokenCount": 2400})

    def answer(sha: str) -> Turn:
        return Turn(
            role=Role.ASSISTANT,
            parts=(
                TextPart("Here is the edited image.", provider_metadata=signature),
                ImagePart(sha, "image/png", provider_metadata=signature),
            ),
            provider="gemini",
            model=DEFAULTS.gemini_model,
            finish_reason="STOP",
            usage=usage,
            created_at=now,
        )

    upload = ImagePart(shas[index % len(shas)], "image/png")
    return [
        Turn(role=Role.USER, parts=(upload, TextPart("make the sky stormy")), created_at=now),
        answer(shas[(index + 1) % len(shas)]),
        Turn(role=Role.USER, parts=(TextPart("now remove the car"),), created_at=now),
        answer(shas[(index + 2) % len(shas)]),
    ]


def measure_start(data_dir: Path, emulator_url: str, *, library: bool) -> dict[str, Any]:
    with app_process(data_dir, emulator_url, wait=False) as app:
        timing = first_200s(app)
        time.sleep(SETTLE_S)
        result: dict[str, Any] = {**timing, "idle": rss(app.pid)}
        if library:
            page = httpx.get(app.url + "/", timeout=30)
            client = Client(app.url + "/", verbose=False, download_files=False)
            listed = client.predict(OWNER, "", api_name="/conversations")
            time.sleep(SETTLE_S)
            result.update(
                {"page_status": page.status_code, "listed": len(listed), "after_listing": rss(app.pid)}
            )
    return result


def plot(data: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, (starts, memory) = plt.subplots(1, 2, figsize=(12, 4.8))
    runs = data["cold_starts"]
    xs = range(1, len(runs) + 1)
    starts.plot(xs, [r["page_s"] for r in runs], marker="o", label="first 200 of /")
    starts.plot(xs, [r["healthz_s"] for r in runs], marker="s", label="first 200 of /healthz")
    starts.set_xticks(list(xs))
    starts.set_xlabel("start number (1 = after dropping the page cache, if --drop-caches)")
    starts.set_ylabel("seconds from spawn")
    starts.set_ylim(bottom=0)
    starts.set_title("Cold start of python app.py")
    starts.legend(fontsize=8)
    library = data["with_conversations"]
    labels = ["idle, empty", f"idle, {library['conversations']} conv.", "after / + /conversations"]
    values = [statistics.median(r["idle"]["rss_mb"] for r in runs), library["idle"]["rss_mb"]]
    values.append(library["after_listing"]["rss_mb"])
    memory.bar(labels, values, color=["tab:blue", "tab:orange", "tab:green"])
    memory.axhline(TARGET_MB, color="red", linestyle="--", label=f"target {TARGET_MB:.0f} MB")
    for x, value in enumerate(values):
        memory.text(x, value + 5, f"{value:.0f} MB", ha="center")
    memory.set_ylabel("RSS (MB)")
    memory.set_title("Resident memory of the app process")
    memory.legend(fontsize=8)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.startup_memory", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 start, 50 conversations")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument(
        "--drop-caches", action="store_true", help="drop the page cache before the first start"
    )
    args = parser.parse_args(argv)
    starts, conversations = (1, 50) if args.quick else (args.starts, args.conversations)

    quiet = {} if args.quick else wait_until_quiet()
    with (
        ForeignCpu() as foreign,
        emulator_process(0) as emulator,
        tempfile.TemporaryDirectory(prefix="retouch-bench-") as tmp,
    ):
        dropped = drop_page_cache() if args.drop_caches and os.geteuid() == 0 else False
        runs = [
            measure_start(Path(tmp) / f"empty-{n}" / "data", emulator.url, library=False)
            for n in range(starts)
        ]
        library_dir = Path(tmp) / "library" / "data"
        populated = populate(library_dir, conversations)
        library = {**populated, **measure_start(library_dir, emulator.url, library=True)}

    data = {
        "environment": {"before": quiet, "during": foreign.result},
        "setup": {"starts": starts, "page_cache_dropped_before_first": dropped, "settle_s": SETTLE_S},
        "target_mb": TARGET_MB,
        "cold_starts": runs,
        "cold_start_summary": {
            "first_page_s": runs[0]["page_s"],
            "first_healthz_s": runs[0]["healthz_s"],
            "median_page_s": statistics.median(r["page_s"] for r in runs),
            "median_healthz_s": statistics.median(r["healthz_s"] for r in runs),
            "median_idle_rss_mb": statistics.median(r["idle"]["rss_mb"] for r in runs),
        },
        "with_conversations": library,
        "met": library["after_listing"]["rss_mb"] < TARGET_MB
        and library["after_listing"]["peak_rss_mb"] < TARGET_MB,
    }
    plot(data, result_path(NAME, args.quick, ".png"))
    write_json(NAME, args.quick, data)
    summary = data["cold_start_summary"]
    rows: list[list[object]] = [["measure", "value"]]
    rows += [
        ["cold start -> / 200 (first, median s)", f"{summary['first_page_s']} / {summary['median_page_s']}"],
        [
            "cold start -> /healthz 200 (first, median s)",
            f"{summary['first_healthz_s']} / {summary['median_healthz_s']}",
        ],
        ["RSS idle, empty (median MB)", summary["median_idle_rss_mb"]],
        [f"RSS idle, {conversations} conversations (MB)", library["idle"]["rss_mb"]],
        [
            "RSS after / + /conversations (MB, peak)",
            f"{library['after_listing']['rss_mb']} ({library['after_listing']['peak_rss_mb']})",
        ],
        ["conversations listed", library["listed"]],
        ["target < 400 MB met", "yes" if data["met"] else "NO"],
    ]
    print(table(rows))  # noqa: T201 - the summary table


if __name__ == "__main__":
    main()
