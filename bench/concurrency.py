"""32 simultaneous users through gradio_client. Target: the last answer within 1.5 s (ideal 1 s).

How: the emulator runs as its own process with ``--latency-ms 1000`` (every answer leaves 1 s
after its request arrived); by default it answers with ready, distinct 1024x1024 photo-like
PNGs (2.4 MB, as a real edit is), since its own rendering would take the CPU a remote
provider's does not (``--answers rendered``: it renders flat pictures itself). The real app
(``python app.py``, fresh data directory, rate limits raised out of the way) is started once
per ``RETOUCH_MODEL_CONCURRENCY`` in {8, 16, 32, 64}. 32 threads each build their own
``gradio_client.Client`` (``CLIENT_OPTIONS``), wait on a barrier and each send one ``/send``
(new conversation, short text, no image). The figure is the wall time from the barrier's
release to the last answer. A first round is a warm-up (the first call of each client, lazy
start-up in the app) and is not counted; then ``--rounds`` rounds (default 3) are measured.
The CPU seconds used by the app, the emulator and this process during each round are
recorded too, and the app's CPU per answered turn (``app_cpu_ms_per_turn``: psutil user +
system seconds of the app process during the round / answers with status ok). Last, the same clients call a trivial endpoint at once (``floor_round``): the
queue's own cost, under which no /send round can go.


A second client kind runs the same rounds through Gradio's REST call API (``/gradio_api/call/send``
then its SSE stream) from one asyncio loop, to tell the app's share from gradio_client's own
(its threads poll, and share this machine's CPUs with the app). ``--py-spy LIMIT`` then samples
the app with py-spy during 3 more rounds (raw HTTP, or ``--py-spy-client gradio_client``;
``--py-spy-gil`` samples only the GIL holder) and writes where its threads spend their time;
``python -m bench.cpu_breakdown`` sorts those samples into the app's cost centres.

Writes ``bench/results/concurrency.json`` and ``concurrency.png`` (variants: ``concurrency_<variant>.*``).

    python -m bench.concurrency [--quick] [--users N] [--rounds N] [--limits 8 16 32 64] [--image-size 512]
                                [--py-spy 32 [--py-spy-client gradio_client] [--py-spy-gil]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
from gradio_client import Client

from bench.common import (
    ForeignCpu,
    app_process,
    emulator_process,
    pyplot,
    result_path,
    save_figure,
    summary_ms,
    table,
    wait_until_quiet,
    write_json,
    write_photos,
)
from chat.config import Settings

NAME = "concurrency"
TARGET_S = 1.5
LATENCY_MS = 1000
LIMITS = (8, 16, 32, 64)
USERS = 32
DEFAULT_LIMIT = Settings.model_fields["model_concurrency"].default
#: gradio_client opens a new httpx client for every request; with ``ssl_verify`` on, each one
#: loads the CA bundle (~40 ms of CPU) even for plain http:// on loopback, ~100 ms a call in all,
#: on the cores the app needs. There is no TLS here, so there is nothing to verify.
CLIENT_OPTIONS: dict[str, Any] = {"verbose": False, "download_files": False, "ssl_verify": False}


def cpu_seconds(*pids: int) -> dict[int, float]:
    times = {}
    for pid in pids:
        cpu = psutil.Process(pid).cpu_times()
        times[pid] = cpu.user + cpu.system
    return times


def gradio_round(clients: list[Client], prompt: str, options: dict | None) -> list[tuple[float, str]]:
    """Every client sends one /send at the same moment; (seconds after the barrier's release, status)."""
    released: list[float] = []
    barrier = threading.Barrier(len(clients), action=lambda: released.append(time.perf_counter()))

    def user(index: int) -> tuple[float, str]:
        barrier.wait()
        try:
            transcript = clients[index].predict("", f"{prompt} #{index}", None, options, api_name="/send")
        except Exception as exc:  # noqa: BLE001 - one failed user (e.g. a timeout at 128 users), not the end
            return time.perf_counter(), f"error: {type(exc).__name__}"
        return time.perf_counter(), transcript["turns"][-1]["status"]

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        done = list(pool.map(user, range(len(clients))))
    return [(end - released[0], status) for end, status in done]


def floor_round(clients: list[Client]) -> float:
    """Every client calls a trivial endpoint at the same moment; seconds from the barrier to the last reply.

    ``/conversations`` is one small query: no provider call, no turn stored. What is left is
    the cost of Gradio's queue and of the clients themselves, the floor under any /send round.
    """
    released: list[float] = []
    barrier = threading.Barrier(len(clients), action=lambda: released.append(time.perf_counter()))

    def user(client: Client) -> float:
        barrier.wait()
        with contextlib.suppress(Exception):  # a failed call counts as the time it failed at
            client.predict("bench-floor-owner-key-0123", "", api_name="/conversations")
        return time.perf_counter()

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        return max(pool.map(user, clients)) - released[0]


async def _raw_send(http: httpx.AsyncClient, url: str, text: str, options: dict | None) -> tuple[float, str]:
    """Gradio's REST call API (POST then the event's SSE stream): the same queue, no client threads.

    A connection the app drops is one failed user (status ``transport error: <kind>``), not
    the end of the benchmark (it happened with 128 users at once).
    """
    try:
        return await _raw_send_once(http, url, text, options)
    except httpx.TransportError as exc:
        return time.perf_counter(), f"transport error: {type(exc).__name__}"


async def _raw_send_once(
    http: httpx.AsyncClient, url: str, text: str, options: dict | None
) -> tuple[float, str]:
    joined = await http.post(
        f"{url}/gradio_api/call/send", json={"data": ["", text, None, options, None, "", "", ""]}
    )
    event_id = joined.raise_for_status().json()["event_id"]
    event = ""
    async with http.stream("GET", f"{url}/gradio_api/call/send/{event_id}") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                status = json.loads(line[5:])[0]["turns"][-1]["status"] if event == "complete" else "error"
                return time.perf_counter(), status
    return time.perf_counter(), "no answer"


async def raw_round(url: str, users: int, prompt: str, options: dict | None) -> list[tuple[float, str]]:
    limits = httpx.Limits(max_connections=4 * users, max_keepalive_connections=2 * users)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await http.get(f"{url}/healthz")
        started = time.perf_counter()
        done = await asyncio.gather(*[_raw_send(http, url, f"{prompt} #{i}", options) for i in range(users)])
    return [(end - started, status) for end, status in done]


def provider_latencies(log: Path, offset: int) -> tuple[list[float], int]:
    """The app's own per-turn latency (its provider calls, from the JSON turn log) logged after ``offset``."""
    text = log.read_text()
    latencies = []
    for line in text[offset:].splitlines():
        if '"event": "turn"' in line:
            latencies.append(json.loads(line[line.index("{") :])["latency_ms"] / 1000)
    return latencies, len(text)


IDLE_LEAVES = (
    "EpollSelector.select",
    "Condition.wait",
    "_worker (concurrent/futures/thread.py:81)",
    "CallThreads._work",  # waiting for a call (SimpleQueue.get)
)


def profile_app(
    app_pid: int,
    url: str,
    users: int,
    options: dict | None,
    out: Path,
    rounds: int = 3,
    *,
    clients: list[Client] | None = None,
    gil: bool = False,
) -> dict[str, Any]:
    """py-spy on the app during ``rounds`` extra rounds (not counted): raw HTTP, or ``clients``' /send.

    py-spy pauses the app for each sample (100 a second), so those rounds are slower; the
    shares of time are what this is for. ``gil``: sample only the thread holding the GIL
    (py-spy ``--gil``), so samples x 10 ms is the app's Python CPU and every sample is one the
    process spent computing; native code that releases the GIL (SQLite, large hashlib and zlib
    calls, file and socket I/O) is then not sampled. Returns the app's CPU and answers during
    the profiled rounds, to set the samples against.
    """
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    stacks = out.with_suffix(".collapsed")
    command = [spy, "record", "-p", str(app_pid), "-r", "100", "--threads", "-f", "raw", "-o", str(stacks)]
    command += ["--gil"] if gil else []
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    before = cpu_seconds(app_pid)[app_pid]
    answered = 0
    for number in range(rounds):
        prompt = f"profiled round {number}"
        if clients is not None:
            done = gradio_round(clients, prompt, options)
        else:
            done = asyncio.run(raw_round(url, users, prompt, options))
        answered += sum(status == "ok" for _, status in done)
    app_cpu = cpu_seconds(app_pid)[app_pid] - before
    recorder.send_signal(signal.SIGINT)
    recorder.wait(timeout=60)
    facts = {
        "client": "gradio_client" if clients is not None else "raw_http",
        "gil_only": gil,
        "rounds": rounds,
        "answered": answered,
        "app_cpu_s": round(app_cpu, 3),
        "app_cpu_ms_per_turn": round(app_cpu / max(answered, 1) * 1000, 2),
    }
    out.write_text(f"{json.dumps(facts)}\n" + summarise_stacks(stacks))
    return facts


def summarise_stacks(stacks: Path, top: int = 30) -> str:
    """Inclusive share of the busy samples per function: the event-loop thread, then the worker threads."""
    groups = {
        "event loop (uvicorn's thread)": "Server.run (",
        "worker threads (asyncio.to_thread)": ": asyncio_",
        "provider call threads (chat/providers/http.py CallThreads)": ": provider-call-",
    }
    lines = [f"py-spy samples of the app ({stacks.name}); idle waits left out\n"]
    for title, marker in groups.items():
        counts: Counter[str] = Counter()
        busy = 0
        for line in stacks.read_text().splitlines():
            stack, _, number = line.rpartition(" ")
            frames = stack.split(";")
            if marker not in stack or any(frames[-1].startswith(idle) for idle in IDLE_LEAVES):
                continue
            busy += int(number)
            for name in {_frame_name(frame) for frame in frames[1:]}:
                counts[name] += int(number)
        lines.append(f"== {title}: {busy} busy samples")
        lines += [f"{count / max(busy, 1) * 100:5.1f}%  {name}" for name, count in counts.most_common(top)]
        lines.append("")
    return "\n".join(lines)


def _frame_name(frame: str) -> str:
    """``"func (path/to/file.py:12)"`` -> ``"func (file.py)"``."""
    match = re.match(r"^(.*) \((.*?):\d+\)$", frame)
    return f"{match.group(1)} ({Path(match.group(2)).name})" if match else frame


def measure(
    limit: int,
    users: int,
    rounds: int,
    emulator_url: str,
    emulator_pid: int,
    options: dict | None,
    profile_to: Path | None = None,
    profile_client: str = "raw_http",
    profile_gil: bool = False,
    kinds: tuple[str, ...] = ("gradio_client", "raw_http"),
) -> dict[str, Any]:
    """Per client kind: a warm-up round (not counted), then ``rounds`` measured rounds."""
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="retouch-bench-") as tmp:
        extra = {"RETOUCH_MODEL_CONCURRENCY": str(limit)}
        with app_process(Path(tmp) / "data", emulator_url, extra_env=extra) as app:
            with ThreadPoolExecutor(max_workers=users) as pool:
                clients = list(pool.map(lambda _: Client(app.url + "/", **CLIENT_OPTIONS), range(users)))
            offset = 0
            for kind in results:
                for number in range(rounds + 1):
                    pids = (app.pid, emulator_pid, psutil.Process().pid)
                    before = cpu_seconds(*pids)
                    prompt = f"a lighthouse at dusk, {kind} round {number}"
                    if kind == "gradio_client":
                        done = gradio_round(clients, prompt, options)
                    else:
                        done = asyncio.run(raw_round(app.url, users, prompt, options))
                    after = cpu_seconds(*pids)
                    time.sleep(0.5)  # let the last log lines land
                    latencies, offset = provider_latencies(app.log_path, offset)
                    if number == 0:
                        continue  # warm-up: first call of each client, lazy start-up in the app
                    times = sorted(t for t, _ in done)
                    answered = sum(status == "ok" for _, status in done)
                    app_cpu = after[app.pid] - before[app.pid]
                    results[kind].append(
                        {
                            "wall_s": round(times[-1], 4),
                            "answered": answered,
                            "app_cpu_ms_per_turn": round(app_cpu / max(answered, 1) * 1000, 2),
                            "latencies_s": [round(t, 4) for t in times],
                            "statuses": sorted({status for _, status in done}),
                            "app_turn_latency_s": summary_ms(latencies),
                            "cpu_s": {
                                name: round(after[pid] - before[pid], 3)
                                for name, pid in zip(("app", "emulator", "clients"), pids, strict=True)
                            },
                        }
                    )
            floors = []
            for _ in range(rounds + 1):
                before = cpu_seconds(app.pid)
                wall = floor_round(clients)
                floors.append(
                    {
                        "wall_s": round(wall, 4),
                        "app_cpu_s": round(cpu_seconds(app.pid)[app.pid] - before[app.pid], 3),
                    }
                )
            profiled = None
            if profile_to is not None:
                profiled = profile_app(
                    app.pid,
                    app.url,
                    users,
                    options,
                    profile_to,
                    clients=clients if profile_client == "gradio_client" else None,
                    gil=profile_gil,
                )
    summary: dict[str, Any] = {"model_concurrency": limit, "default": limit == DEFAULT_LIMIT}
    if profiled is not None:
        summary["profiled_rounds"] = profiled
    summary["queue_floor"] = {
        "median_wall_s": round(statistics.median(f["wall_s"] for f in floors[1:]), 3),
        "rounds": floors[1:],  # the first was a warm-up
    }
    for kind, measured in results.items():
        walls = [r["wall_s"] for r in measured]
        summary[kind] = {
            "median_wall_s": round(statistics.median(walls), 3),
            "min_wall_s": min(walls),
            "max_wall_s": max(walls),
            "met": statistics.median(walls) <= TARGET_S,
            "all_ok": all(r["statuses"] == ["ok"] for r in measured),
            # psutil CPU of the app process during the round / answers with status ok
            "app_cpu_ms_per_turn": {
                "median": round(statistics.median(r["app_cpu_ms_per_turn"] for r in measured), 2),
                "min": min(r["app_cpu_ms_per_turn"] for r in measured),
                "max": max(r["app_cpu_ms_per_turn"] for r in measured),
                "total": round(
                    sum(r["cpu_s"]["app"] for r in measured)
                    / max(sum(r["answered"] for r in measured), 1)
                    * 1000,
                    2,
                ),
            },
            "rounds": measured,
        }
    return summary


KINDS = {
    "gradio_client": "gradio_client (the target)",
    "raw_http": "raw HTTP, same queue (no client threads)",
}


def name_of(summary: dict[str, Any]) -> str:
    return f"{summary['model_concurrency']}{' (default)' if summary['default'] else ''}"


def plot(summaries: list[dict[str, Any]], users: int, latency_ms: float, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.8))
    bars = axes[0]
    names = [name_of(s) for s in summaries]
    width = 0.4
    measured = {kind: title for kind, title in KINDS.items() if kind in summaries[0]}
    for offset, (kind, title) in enumerate(measured.items()):
        medians = [s[kind]["median_wall_s"] for s in summaries]
        low = [max(0.0, m - s[kind]["min_wall_s"]) for m, s in zip(medians, summaries, strict=True)]
        high = [max(0.0, s[kind]["max_wall_s"] - m) for m, s in zip(medians, summaries, strict=True)]
        xs = [x + (offset - 0.5) * width for x in range(len(names))]
        bars.bar(xs, medians, width, yerr=[low, high], capsize=4, label=title)
    bars.set_xticks(range(len(names)), names)
    bars.axhline(latency_ms / 1000, color="grey", linestyle=":", label="ideal (provider latency)")
    bars.axhline(TARGET_S, color="red", linestyle="--", label=f"target {TARGET_S} s")
    bars.set_xlabel("RETOUCH_MODEL_CONCURRENCY")
    bars.set_ylabel("barrier -> last answer (s); median, min-max")
    bars.set_title(f"{users} simultaneous /send, provider latency {latency_ms:.0f} ms")
    bars.legend(fontsize=8)
    for ax, (kind, title) in zip(axes[1:], measured.items(), strict=False):
        for name, s in zip(names, summaries, strict=True):
            latencies = s[kind]["rounds"][0]["latencies_s"]
            ax.plot(latencies, range(1, len(latencies) + 1), drawstyle="steps-post", label=name)
        ax.axvline(TARGET_S, color="red", linestyle="--", linewidth=1)
        ax.set_xlabel("seconds after the barrier")
        ax.set_ylabel("answers received (first measured round)")
        ax.set_title(f"When each user got the answer: {title}")
        ax.legend(fontsize=8, title="model concurrency")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.concurrency", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: 8 users, limit {DEFAULT_LIMIT}, 1 round"
    )
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limits", type=int, nargs="+", default=list(LIMITS))
    parser.add_argument(
        "--image-size", help='answer size option, e.g. "512" (default: 1K, the model default)'
    )
    parser.add_argument(
        "--py-spy",
        type=int,
        metavar="LIMIT",
        help="after measuring this limit, profile the app with py-spy during 3 more raw rounds (not counted)",
    )
    parser.add_argument(
        "--py-spy-client",
        choices=tuple(KINDS),
        default="raw_http",
        help="which client kind the profiled rounds use",
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=("gradio_client", "raw_http"),
        default=["gradio_client", "raw_http"],
        help="which client kinds to measure",
    )
    parser.add_argument(
        "--py-spy-gil", action="store_true", help="py-spy --gil: sample only the thread holding the GIL"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=LATENCY_MS, help="the emulator's latency per answer"
    )
    parser.add_argument(
        "--answers",
        choices=("photo", "rendered"),
        default="photo",
        help="photo: the emulator answers with ready photo-like PNGs (its rendering would take this machine's "
        "CPU, a real provider's does not); rendered: it renders each answer",
    )
    parser.add_argument("--tag", help="suffix for the result files of a variant run")
    parser.add_argument(
        "--max-wait-s",
        type=float,
        default=900.0,
        help="wait at most this long for the machine to be quiet first (the load is recorded either way)",
    )
    args = parser.parse_args(argv)
    options = {"image_size": args.image_size} if args.image_size else None
    # Variants get their own files: concurrency_<users>users_<size>.*
    suffix = (f"_{args.users}users" if args.users != USERS else "") + (
        f"_{args.image_size}" if args.image_size else ""
    )
    suffix += f"_{args.latency_ms:.0f}ms" if args.latency_ms != LATENCY_MS else ""
    name = NAME + suffix + (f"_{args.tag}" if args.tag else "")
    users, rounds, limits = (8, 1, [DEFAULT_LIMIT]) if args.quick else (args.users, args.rounds, args.limits)

    quiet = {} if args.quick else wait_until_quiet(timeout_s=args.max_wait_s)
    answer_side = 512 if args.image_size == "512" else 1024
    with (
        tempfile.TemporaryDirectory(prefix="retouch-answers-") as answers,
        ForeignCpu() as foreign,
        emulator_process(
            args.latency_ms,
            answer_images=write_photos(Path(answers), users + 8, answer_side)
            if args.answers == "photo"
            else None,
        ) as emulator,
    ):
        summaries = [
            measure(
                limit,
                users,
                rounds,
                emulator.url,
                emulator.pid,
                options,
                result_path(f"{name}_app_profile_{limit}", args.quick, ".txt")
                if limit == args.py_spy
                else None,
                args.py_spy_client,
                args.py_spy_gil,
                tuple(args.kinds),
            )
            for limit in limits
        ]

    plot(summaries, users, args.latency_ms, result_path(name, args.quick, ".png"))
    write_json(
        name,
        args.quick,
        {
            "setup": {
                "users": users,
                "rounds": rounds,
                "provider_latency_ms": args.latency_ms,
                "default_model_concurrency": DEFAULT_LIMIT,
                "options": options,
                "answers": args.answers,
                "client_options": CLIENT_OPTIONS,
            },
            "environment": {"before": quiet, "during": foreign.result},
            "target_s": TARGET_S,
            "limits_meeting_target": {
                kind: [s["model_concurrency"] for s in summaries if s[kind]["met"]]
                for kind in KINDS
                if kind in summaries[0]
            },
            "summary": summaries,
        },
    )
    rows: list[list[object]] = [
        [
            "model concurrency",
            "client",
            "median s",
            "min s",
            "max s",
            "app turn p50 s",
            "CPU s app/emu/clients",
            "app CPU ms/turn median (min-max)",
            "met",
        ]
    ]
    for s in summaries:
        for kind in (kind for kind in KINDS if kind in s):
            k = s[kind]
            cpu = k["rounds"][0]["cpu_s"]
            rows.append(
                [
                    name_of(s),
                    kind,
                    k["median_wall_s"],
                    k["min_wall_s"],
                    k["max_wall_s"],
                    round(k["rounds"][0]["app_turn_latency_s"]["p50_ms"] / 1000, 2),
                    f"{cpu['app']}/{cpu['emulator']}/{cpu['clients']}",
                    f"{k['app_cpu_ms_per_turn']['median']} ({k['app_cpu_ms_per_turn']['min']}-"
                    f"{k['app_cpu_ms_per_turn']['max']})",
                    "yes" if k["met"] else "NO",
                ]
            )
    print(table(rows))  # noqa: T201 - the summary table
    for s in summaries:
        floor = s["queue_floor"]
        cpu = statistics.median(f["app_cpu_s"] for f in floor["rounds"])
        print(  # noqa: T201
            f"queue floor at {name_of(s)}: {users} trivial calls at once, {floor['median_wall_s']} s, app CPU {cpu} s"
        )


if __name__ == "__main__":
    main()
