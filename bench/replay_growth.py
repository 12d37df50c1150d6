"""Request bytes and input tokens per turn over 30 turns, for each replay bound K.

Target: under the default policy, the turn-30 request is at most 2x the turn-2 request (bytes).

How: ``bench.harness`` runs one 30-turn conversation per K in {none, 2, 3, 4, 6, 8} (none =
naive full replay, ``RETOUCH_KEEP_IMAGES=0``) through the real ChatService and GeminiClient
against the emulator on a thread. Bytes are the JSON body exactly as httpx sent it (read in the
transport); input tokens are the emulator's ``usageMetadata.promptTokenCount`` (about 4
characters per text token, 1120 per input image, like Gemini 3), as stored on each answer;
the estimated cost is the one the Gemini adapter priced that usage at (``Usage.cost_usd``). The conversation starts
from a 1024x1024 photo uploaded as JPEG (as phones send it), and again uploaded as PNG, since
the turn-2 request (photo + first answer) is the denominator of the target. Answers are
distinct 1024x1024 photo-like PNGs (see bench/harness.py).

Writes ``bench/results/replay_growth.json`` and ``replay_growth.png`` (bytes and tokens vs
turn for each K).

    python -m bench.replay_growth [--quick] [--turns N] [--keep 2 3 4 ...]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from bench.common import (
    ForeignCpu,
    jpeg_bytes,
    photo,
    png_bytes,
    pyplot,
    result_path,
    save_figure,
    table,
    wait_until_quiet,
    write_json,
)
from bench.harness import TurnRecord, bench_service
from chat.providers.context import DEFAULT_KEEP_IMAGES

NAME = "replay_growth"
TARGET_RATIO = 2.0
SIZE = 1024
KEEPS: tuple[int, ...] = (0, 2, 3, 4, 6, 8)  # 0 = no bound


def label(keep: int) -> str:
    if keep == 0:
        return "no bound"
    return f"K={keep}" + (" (default)" if keep == DEFAULT_KEEP_IMAGES else "")


async def run(keep: int, turns: int, upload: bytes, answers: str) -> list[TurnRecord]:
    async with bench_service(keep or None, answers=answers, turns=turns) as bench:
        return await bench.conversation(turns, upload)


def summarise(records: list[TurnRecord]) -> dict[str, Any]:
    first, second, last = records[0], records[1], records[-1]
    tokens = [r.prompt_tokens or 0 for r in records]
    return {
        "turn1_bytes": first.request_bytes,
        "turn2_bytes": second.request_bytes,
        "last_turn": last.turn,
        "last_bytes": last.request_bytes,
        "last_over_turn2": round(last.request_bytes / second.request_bytes, 3),
        "max_bytes": max(r.request_bytes for r in records),
        "total_bytes": sum(r.request_bytes for r in records),
        "last_images": last.request_images,
        "last_prompt_tokens": last.prompt_tokens,
        "total_prompt_tokens": sum(tokens),
        "total_cost_usd": round(sum(r.cost_usd for r in records), 4),
    }


def plot(results: dict[str, dict[int, list[TurnRecord]]], path: Path) -> None:
    plt = pyplot()
    uploads = list(results)
    fig, axes = plt.subplots(1, len(uploads) + 1, figsize=(6 * (len(uploads) + 1), 4.8))
    for ax, upload in zip(axes, uploads, strict=False):
        for keep, records in results[upload].items():
            style = {"linewidth": 2.5} if keep == DEFAULT_KEEP_IMAGES else {"linewidth": 1.2}
            ax.plot(
                [r.turn for r in records],
                [r.request_bytes / 1e6 for r in records],
                label=label(keep),
                **style,
            )
        default = results[upload].get(DEFAULT_KEEP_IMAGES)
        if default and len(default) > 1:
            ax.axhline(
                TARGET_RATIO * default[1].request_bytes / 1e6,
                color="red",
                linestyle="--",
                linewidth=1,
                label="target: 2x turn-2 bytes (default K)",
            )
        ax.set_yscale("log")
        ax.set_xlabel("turn number")
        ax.set_ylabel("request body (MB, log)")
        ax.set_title(f"Request bytes per turn, {SIZE}x{SIZE} photo uploaded as {upload}")
        ax.legend(fontsize=8)
    ax = axes[-1]
    for keep, records in results[uploads[0]].items():
        ax.plot([r.turn for r in records], [r.prompt_tokens or 0 for r in records], label=label(keep))
    ax.set_xlabel("turn number")
    ax.set_ylabel("input tokens (promptTokenCount)")
    ax.set_title("Input tokens per turn")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay_growth", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 turns, K in {none, 2, default}")
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--keep", type=int, nargs="+", default=list(KEEPS), help="bounds to run; 0 = none")
    parser.add_argument(
        "--answers", choices=("photo", "emulator"), default="photo", help="see bench/harness.py"
    )
    args = parser.parse_args(argv)
    turns, keeps = (8, [0, 2, DEFAULT_KEEP_IMAGES]) if args.quick else (args.turns, args.keep)

    picture = photo(SIZE, seed=1)
    uploads = {"JPEG": jpeg_bytes(picture), "PNG": png_bytes(picture)}
    results: dict[str, dict[int, list[TurnRecord]]] = {}
    quiet = {} if args.quick else wait_until_quiet()
    with ForeignCpu() as foreign:
        for name, upload in uploads.items():
            results[name] = {keep: asyncio.run(run(keep, turns, upload, args.answers)) for keep in keeps}

    summaries = {
        upload: {label(keep): {"keep_images": keep, **summarise(recs)} for keep, recs in by_keep.items()}
        for upload, by_keep in results.items()
    }
    default = summaries["JPEG"].get(label(DEFAULT_KEEP_IMAGES))
    plot(results, result_path(NAME, args.quick, ".png"))
    write_json(
        NAME,
        args.quick,
        {
            "setup": {
                "image_size": SIZE,
                "upload_bytes": {name: len(data) for name, data in uploads.items()},
                "turns": turns,
                "answers": args.answers,
                "default_keep_images": DEFAULT_KEEP_IMAGES,
            },
            "environment": {"before": quiet, "during": foreign.result},
            "target": {
                "last_over_turn2_max": TARGET_RATIO,
                "met": bool(default and default["last_over_turn2"] <= 2),
            },
            "summary": summaries,
            "turns": {
                upload: {label(keep): [r.as_dict() for r in recs] for keep, recs in by_keep.items()}
                for upload, by_keep in results.items()
            },
        },
    )
    rows: list[list[object]] = [
        [
            "upload",
            "policy",
            "turn-2 MB",
            f"turn-{turns} MB",
            "ratio",
            "images",
            "tokens",
            "total MB",
            "total tokens",
            "$",
        ]
    ]
    for upload, by_label in summaries.items():
        for name, s in by_label.items():
            rows.append(
                [
                    upload,
                    name,
                    round(s["turn2_bytes"] / 1e6, 2),
                    round(s["last_bytes"] / 1e6, 2),
                    s["last_over_turn2"],
                    s["last_images"],
                    s["last_prompt_tokens"],
                    round(s["total_bytes"] / 1e6, 1),
                    s["total_prompt_tokens"],
                    s["total_cost_usd"],
                ]
            )
    print(table(rows))  # noqa: T201 - the summary table


if __name__ == "__main__":
    main()
