"""N simultaneous users through the load balancer to 1 or 2 replicas on PostgreSQL and S3 (issue 14).

How: one fleet per replica count (tests/fleet.py: HAProxy with deploy/haproxy.cfg, ``python
app.py`` replicas with data directories of their own, ``RETOUCH_BLOBS`` on a moto S3 bucket, one
durable PostgreSQL), the emulator as its own process answering every request ``--latency-ms``
after it arrived with ready photo-like PNGs (``--image-size``, as bench/concurrency.py). Each user
is its own ``httpx.AsyncClient`` with its own cookie jar (so the balancer pins it to a replica, as
it does a browser), all in one asyncio loop, speaking Gradio's browser protocol: ``GET /config``
once, then per turn ``POST /gradio_api/queue/join`` and the ``queue/data`` event stream. A round
releases every user at once, each sending one ``/send`` (a new conversation, a short text); a
warm-up round is not counted, then ``--rounds`` are measured. Per round: the wall time from the
release to the last answer (or refusal), p50/p99 of the answered users' own times, how many
answered and how the others failed (e.g. ``join 503``: both replicas' queues full), and the CPU
seconds (psutil, user + system) of the replicas, HAProxy, the emulator, moto, PostgreSQL (its
process tree) and this process (the clients). ``app_cpu_ms_per_turn`` is the replicas' CPU over
the answered turns.

The replicas run with the app's defaults except the abuse limits (every user comes from
127.0.0.1); ``--env NAME=VALUE`` adds settings (e.g. ``RETOUCH_QUEUE_MAX_SIZE=256``, as
bench/concurrency.py runs), recorded in the results. Writes ``bench/results/fleet[_<variant>].json``.

    python -m bench.fleet [--quick] [--users 128] [--latency-ms 1000] [--replicas 1 2] [--rounds 3]
                          [--image-size 1024] [--env NAME=VALUE ...] [--variant NAME] [--max-wait-s 900]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.common import (
    emulator_process,
    queue_event,
    summary_ms,
    table,
    wait_until_quiet,
    write_json,
    write_photos,
)
from chat.config import Settings
from tests.fleet import Fleet, fleet, send
from tests.postgres import start_postgres
from tests.s3 import start_s3

NAME = "fleet"
TURN_TIMEOUT_S = 600


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its living children (PostgreSQL's backends,
    the servers run under ``timeout``)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            cpu = process.cpu_times()
        except psutil.Error:
            continue
        total += cpu.user + cpu.system
    return total


class User:
    """One browser tab, as the balancer sees it: its own connection pool and cookie jar."""

    def __init__(self, base_url: str, name: str) -> None:
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
        self.http = httpx.AsyncClient(
            base_url=base_url, timeout=TURN_TIMEOUT_S, limits=limits, headers={"user-agent": name}
        )
        self.session_hash = uuid.uuid4().hex[:11]
        self.fn_index = -1

    async def open(self) -> None:
        config = (await self.http.get("config")).raise_for_status().json()
        self.fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "send")

    @property
    def replica(self) -> str:
        return self.http.cookies.get("retouch_replica") or "-"

    async def turn(self, text: str) -> str:
        """One /send; its status ("ok", or what went wrong)."""
        codes: list[int] = []
        try:
            message = await queue_event(
                self.http,
                self.fn_index,
                send(text=text),
                self.session_hash,
                lambda response: codes.append(response.status_code),
            )
        except httpx.HTTPError as exc:
            return f"transport error: {type(exc).__name__}"
        if codes and codes[0] != 200:
            return f"join {codes[0]}"
        if message is None:
            return "no answer"
        if message.get("msg") == "unexpected_error":
            return f"unexpected_error: {message.get('message')}"
        if not message.get("success"):
            return f"failed: {str(message.get('output'))[:80]}"
        return str(message["output"]["data"][0]["turns"][-1]["status"])


async def run_rounds(
    url: str, users: int, rounds: int, sample: Callable[[], dict[str, float]]
) -> list[dict[str, Any]]:
    """A warm-up round, then ``rounds`` measured ones; each user one turn per round."""
    crowd = [User(url, f"bench-user-{n}") for n in range(users)]
    await asyncio.gather(*(user.open() for user in crowd))
    measured = []
    try:
        for number in range(rounds + 1):
            before = sample()
            released = time.perf_counter()

            texts = [f"a lighthouse at dusk, round {number} user {n}" for n in range(users)]
            done = await asyncio.gather(
                *(timed(user, text, released) for user, text in zip(crowd, texts, strict=True))
            )
            after = sample()
            if number == 0:
                continue  # warm-up: each replica's first turns, lazy start-up
            times = sorted(t for t, _ in done)
            answered_times = sorted(t for t, status in done if status == "ok")
            answered = len(answered_times)
            cpu = {name: round(after[name] - before[name], 3) for name in after}
            measured.append(
                {
                    "wall_s": round(times[-1], 3),
                    "per_user": summary_ms(answered_times),  # the answered users' own times
                    "answered": answered,
                    "statuses": dict(sorted(_count(status for _, status in done).items())),
                    "users": [[round(t, 3), status] for t, status in sorted(done)],
                    "users_per_replica": dict(sorted(_count(user.replica for user in crowd).items())),
                    "cpu_s": cpu,
                    "app_cpu_ms_per_turn": round(cpu["replicas"] / max(answered, 1) * 1000, 2),
                }
            )
    finally:
        await asyncio.gather(*(user.http.aclose() for user in crowd))
    return measured


async def timed(user: User, text: str, released: float) -> tuple[float, str]:
    status = await user.turn(text)
    return time.perf_counter() - released, status


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def sampler(
    running: Fleet, emulator_pid: int, moto_pid: int, postgres_pid: int
) -> Callable[[], dict[str, float]]:
    me = psutil.Process().pid

    def sample() -> dict[str, float]:
        return {
            "replicas": sum(tree_cpu_s(r.process.pid) for r in running.replicas),
            "haproxy": tree_cpu_s(running.lb.process.pid),
            "emulator": tree_cpu_s(emulator_pid),
            "s3_moto": tree_cpu_s(moto_pid),
            "postgres": tree_cpu_s(postgres_pid),
            "clients": psutil.Process(me).cpu_times().user + psutil.Process(me).cpu_times().system,
        }

    return sample


def summarise(count: int, measured: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in measured]
    return {
        "replicas": count,
        "median_wall_s": round(statistics.median(walls), 3),
        "min_wall_s": min(walls),
        "max_wall_s": max(walls),
        "median_p50_ms": round(statistics.median(r["per_user"]["p50_ms"] for r in measured), 1),
        "median_p99_ms": round(statistics.median(r["per_user"]["p99_ms"] for r in measured), 1),
        "app_cpu_ms_per_turn_median": round(statistics.median(r["app_cpu_ms_per_turn"] for r in measured), 2),
        "all_ok": all(list(r["statuses"]) == ["ok"] for r in measured),
        "rounds": measured,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 8 users, 200 ms, 1 round, 2 replicas"
    )
    parser.add_argument("--users", type=int, default=128)
    parser.add_argument("--latency-ms", type=float, default=1000)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=1024, help="the emulator's answers, square PNGs")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a replica setting")
    parser.add_argument("--variant", default="", help="suffix of the result file")
    parser.add_argument("--max-wait-s", type=float, default=900, help="at most this long for a quiet machine")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.latency_ms, args.rounds, args.replicas, args.image_size = 8, 200, 1, [2], 256
    settings = dict(item.split("=", 1) for item in args.env)
    quiet = {} if args.quick else wait_until_quiet(timeout_s=args.max_wait_s)

    summaries = []
    postgres, s3 = start_postgres(durable=True), start_s3()
    try:
        with tempfile.TemporaryDirectory(prefix="retouch-bench-fleet-") as tmp:
            answers = write_photos(Path(tmp) / "answers", 16, args.image_size)
            log = Path(tmp) / "emulator.log"
            with emulator_process(args.latency_ms, log, answers) as emulator:
                for count in args.replicas:
                    with fleet(
                        Path(tmp) / f"fleet-{count}",
                        postgres,
                        s3,
                        emulator.url,
                        count=count,
                        app_settings=settings,
                    ) as running:
                        sample = sampler(running, emulator.pid, s3.process.pid, postgres.process.pid)
                        measured = asyncio.run(run_rounds(running.lb.url, args.users, args.rounds, sample))
                    summaries.append(summarise(count, measured))
    finally:
        s3.stop()
        postgres.stop()

    defaults = Settings()
    data = {
        "users": args.users,
        "latency_ms": args.latency_ms,
        "image_size": args.image_size,
        "rounds": args.rounds,
        "replica_settings": settings,
        "model_concurrency_default": defaults.model_concurrency,
        "queue_max_size_default": defaults.queue_max_size,
        "quiet_before": quiet,
        "results": summaries,
    }
    name = f"{NAME}_{args.variant}" if args.variant else NAME
    path = write_json(name, args.quick, data)
    rows: list[list[object]] = [
        ["replicas", "wall s (median)", "min-max", "p50 ms", "p99 ms", "app CPU ms/turn", "all ok"]
    ]
    for s in summaries:
        rows.append(
            [
                s["replicas"],
                s["median_wall_s"],
                f"{s['min_wall_s']}-{s['max_wall_s']}",
                s["median_p50_ms"],
                s["median_p99_ms"],
                s["app_cpu_ms_per_turn_median"],
                s["all_ok"],
            ]
        )
    print(f"{args.users} users x {args.latency_ms:.0f} ms provider, settings {settings or 'defaults'}")  # noqa: T201
    print(table(rows))  # noqa: T201
    for s in summaries:
        cpu = {
            k: round(statistics.median(r["cpu_s"][k] for r in s["rounds"]), 2)
            for k in s["rounds"][0]["cpu_s"]
        }
        statuses = [r["statuses"] for r in s["rounds"]]
        print(f"{s['replicas']} replica(s): CPU s per round (median) {cpu}; statuses {statuses}")  # noqa: T201
    print(f"wrote {path}")  # noqa: T201


if __name__ == "__main__":
    main()
