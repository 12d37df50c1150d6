"""App overhead per turn beyond provider latency. Target: p50 < 30 ms, p99 < 100 ms per turn.

How: ``bench.harness`` runs the real ChatService in-process (SQLite and the blob store in a
temporary directory, GeminiClient over httpx) against the emulator in its own process, at 0 ms
latency. Each conversation uploads a 1024x1024 photo (JPEG) and then edits it for 30 turns;
the answers are 1024x1024 PNGs. A turn's overhead is its wall time (``service.send`` until the
answer is stored) minus the time inside the httpx transport (request sent until the whole
response body is read). After a 2-turn warm-up, ``--conversations`` conversations (default 3)
are measured with the default replay bound (``chat.providers.context.DEFAULT_KEEP_IMAGES``) and with no
bound (keep_images=0). ``--postgres`` stores in PostgreSQL instead (a throw-away cluster of
Debian's PostgreSQL on loopback, ``tests/postgres.py``, with fsync and synchronous commit on).


Writes ``bench/results/overhead.json`` (every turn, with a breakdown of the app's time by
step) and ``overhead.png`` (overhead vs turn number, and the breakdown per turn). ``--profile``
adds a pyinstrument report of one default-bound conversation (``overhead_profile.txt``), run
with ``asyncio.to_thread`` inlined so the work done in worker threads shows up in it.

    python -m bench.overhead [--quick] [--conversations N] [--turns N] [--profile] [--postgres] [--tag NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    ForeignCpu,
    jpeg_bytes,
    photo,
    pyplot,
    result_path,
    save_figure,
    summary_ms,
    table,
    wait_until_quiet,
    write_json,
)
from bench.harness import PROVIDER_HTTP, TurnRecord, bench_service, instrumented
from chat.providers.context import DEFAULT_KEEP_IMAGES
from tests.postgres import start_postgres

NAME = "overhead"
TARGET_P50_MS = 30.0
TARGET_P99_MS = 100.0
SIZE = 1024
WARMUP_TURNS = 2


def configs() -> list[tuple[str, int | None]]:
    return [(f"default bound (K={DEFAULT_KEEP_IMAGES})", DEFAULT_KEEP_IMAGES), ("no bound (K=0)", None)]


async def measure(
    keep_images: int | None,
    *,
    turns: int,
    conversations: int,
    answers: str,
    upload: bytes,
    database_url: str | None = None,
) -> tuple[list[list[TurnRecord]], list[str]]:
    async with bench_service(keep_images, answers=answers, turns=turns, database_url=database_url) as bench:
        with instrumented(bench.clock) as missing:
            await bench.conversation(WARMUP_TURNS, upload)
            runs = [await bench.conversation(turns, upload) for _ in range(conversations)]
    return runs, missing


async def profile(turns: int, answers: str, upload: bytes, out: Path) -> None:
    """One default-bound conversation under pyinstrument, worker-thread steps run inline."""
    from pyinstrument import Profiler

    async def inline(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    original = asyncio.to_thread
    async with bench_service(DEFAULT_KEEP_IMAGES, answers=answers, turns=turns) as bench:
        await bench.conversation(WARMUP_TURNS, upload)
        asyncio.to_thread = inline  # type: ignore[assignment]
        profiler = Profiler(interval=0.0005, async_mode="disabled")
        try:
            profiler.start()
            await bench.conversation(turns, upload)
        finally:
            profiler.stop()
            asyncio.to_thread = original
    out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))


def phase_means(runs: Sequence[Sequence[TurnRecord]], turn: int | None = None) -> dict[str, float]:
    """Mean ms per phase, over every turn (or over turn number ``turn``)."""
    records = [r for run in runs for r in run if turn is None or r.turn == turn]
    names = sorted({name for r in records for name in r.phases}, key=lambda n: (n.startswith("  "), n))
    return {n: round(statistics.fmean(r.phases.get(n, 0.0) * 1000 for r in records), 2) for n in names}


def plot(results: dict[str, list[list[TurnRecord]]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 1 + len(results), figsize=(6.5 * (1 + len(results)), 5.2))
    ax = axes[0]
    for (label, runs), color in zip(results.items(), ("tab:blue", "tab:orange", "tab:green"), strict=False):
        turns = sorted({r.turn for run in runs for r in run})
        for run in runs:
            ax.scatter([r.turn for r in run], [r.overhead_s * 1000 for r in run], s=8, alpha=0.3, color=color)
        medians = [
            statistics.median(r.overhead_s * 1000 for run in runs for r in run if r.turn == t) for t in turns
        ]
        ax.plot(
            turns, medians, marker="o", markersize=3, color=color, label=f"{label} (median; dots: each turn)"
        )
    ax.axhline(TARGET_P50_MS, color="green", linestyle="--", linewidth=1, label="p50 target 30 ms")
    ax.axhline(TARGET_P99_MS, color="red", linestyle="--", linewidth=1, label="p99 target 100 ms")
    ax.set_yscale("log")
    ax.set_xlabel("turn number")
    ax.set_ylabel("overhead per turn (ms, log)")
    ax.set_title(f"App overhead beyond the provider call, {SIZE}x{SIZE}")
    ax.legend(fontsize=8)
    colors = plt.get_cmap("tab20").colors
    for ax, (label, runs) in zip(axes[1:], results.items(), strict=True):
        turns = sorted({r.turn for run in runs for r in run})
        means = phase_means(runs)
        names = [n for n in means if not n.startswith("  ") and n != PROVIDER_HTTP and means[n] >= 0.5]
        names.sort(key=lambda n: -means[n])
        small = [n for n in means if not n.startswith("  ") and n != PROVIDER_HTTP and n not in names]
        per_turn = [phase_means(runs, t) for t in turns]
        stacks = [[m.get(n, 0.0) for m in per_turn] for n in names]
        labels = [f"{n} ({means[n]:.0f} ms)" for n in names]
        if small:
            stacks.append([sum(m.get(n, 0.0) for n in small) for m in per_turn])
            labels.append(f"{len(small)} steps < 0.5 ms each")
        ax.stackplot(turns, stacks, labels=labels, colors=colors[: len(stacks)])
        ax.set_xlabel("turn number")
        ax.set_ylabel("ms (mean over conversations)")
        ax.set_title(f"Where the overhead goes: {label}")
        handles, legend_labels = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], legend_labels[::-1], fontsize=7, loc="upper left", title="mean per turn")
        ax.set_ylim(top=ax.get_ylim()[1] * 1.6)  # room for the legend
    save_figure(fig, path)


def summarise(
    runs: list[list[TurnRecord]], keep: int | None, missing: list[str], turns: int
) -> dict[str, Any]:
    stats = summary_ms([r.overhead_s for run in runs for r in run])
    return {
        "keep_images": keep,
        "overhead": stats,
        "met": stats["p50_ms"] < TARGET_P50_MS and stats["p99_ms"] < TARGET_P99_MS,
        "wall": summary_ms([r.wall_s for run in runs for r in run]),
        "provider_http": summary_ms([r.http_s - r.rewrite_s for run in runs for r in run]),
        "phase_means_ms": phase_means(runs),
        f"phase_means_ms_turn_{turns}": phase_means(runs, turns),
        "phases_not_instrumented": missing,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 6 turns, 1 conversation")
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--conversations", type=int, default=3)
    parser.add_argument(
        "--answers", choices=("photo", "emulator"), default="photo", help="see bench/harness.py"
    )
    parser.add_argument("--profile", action="store_true", help="also write a pyinstrument report")
    parser.add_argument(
        "--default-bound-only", action="store_true", help="measure only the default bound (skip K=0)"
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="store in PostgreSQL (a throw-away cluster on loopback, fsync on, as a server would run) instead of SQLite",
    )
    parser.add_argument("--tag", help="suffix for the result files of a variant run")
    parser.add_argument(
        "--max-wait-s",
        type=float,
        default=900.0,
        help="wait at most this long for the machine to be quiet first (the load is recorded either way)",
    )
    args = parser.parse_args(argv)
    name = NAME + (f"_{args.tag}" if args.tag else "")
    turns, conversations = (6, 1) if args.quick else (args.turns, args.conversations)

    upload = jpeg_bytes(photo(SIZE, seed=1))
    results: dict[str, list[list[TurnRecord]]] = {}
    summaries: dict[str, Any] = {}
    quiet = {} if args.quick else wait_until_quiet(timeout_s=args.max_wait_s)
    with ForeignCpu() as foreign, contextlib.ExitStack() as stack:
        server = None
        if args.postgres:
            server = start_postgres(durable=True)
            stack.callback(server.stop)
        for label, keep in configs()[:1] if args.default_bound_only else configs():
            runs, missing = asyncio.run(
                measure(
                    keep,
                    turns=turns,
                    conversations=conversations,
                    answers=args.answers,
                    upload=upload,
                    database_url=server.url(server.fresh_database()) if server else None,
                )
            )
            results[label] = runs
            summaries[label] = summarise(runs, keep, missing, turns)
        if args.profile:
            asyncio.run(
                profile(turns, args.answers, upload, result_path(f"{name}_profile", args.quick, ".txt"))
            )

    plot(results, result_path(name, args.quick, ".png"))
    write_json(
        name,
        args.quick,
        {
            "setup": {
                "database": "postgresql" if args.postgres else "sqlite",
                "image_size": SIZE,
                "upload_bytes": len(upload),
                "turns": turns,
                "conversations": conversations,
                "warmup_turns": WARMUP_TURNS,
                "answers": args.answers,
                "emulator_latency_ms": 0,
            },
            "environment": {"before": quiet, "during": foreign.result},
            "targets": {"p50_ms": TARGET_P50_MS, "p99_ms": TARGET_P99_MS},
            "summary": summaries,
            "turns": {label: [[r.as_dict() for r in run] for run in runs] for label, runs in results.items()},
        },
    )
    rows: list[list[object]] = [["config", "turns", "p50 ms", "p99 ms", "max ms", "target met"]]
    for label, s in summaries.items():
        o = s["overhead"]
        rows.append([label, o["n"], o["p50_ms"], o["p99_ms"], o["max_ms"], "yes" if s["met"] else "NO"])
    print(table(rows))  # noqa: T201 - the summary table


if __name__ == "__main__":
    main()
