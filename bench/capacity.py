"""256 users x 10 s provider against one app process: is capacity set by the provider and memory, or by a cap?

Target (issue 14): with the default settings, 256 users who all send at once to a provider that
takes 10 s each get every answer within 12 s of the first request (with main's cap of 32 model
calls at once it is >= 80 s: eight waves of 10 s).

How: the emulator (``python -m tests.emulator --latency-ms 10000``) answers every call 10 s after it
arrived, with ready photo-like 1024x1024 PNGs (its own rendering would take the app's CPU). The
real app (``python app.py``) runs with its defaults except: both providers at the emulator,
``RETOUCH_TRUSTED_PROXIES=127.0.0.1`` and each user sending its own ``X-Forwarded-For`` (a
documentation address, 198.18.x.y: a header, never a destination), so the per-visitor limits
count each user as the one visitor they are, as they would behind haproxy; ``--env NAME=VALUE``
sets anything else (the "before" runs give main's defaults, or lift its queue and global limits).

Each user is a light asyncio client with its own ``httpx.AsyncClient`` (its own cookie jar and
connections) speaking the browser's queue protocol: ``POST /gradio_api/queue/join`` for the
``send`` endpoint, then its ``GET /gradio_api/queue/data`` event stream until
``process_completed``, in one session per user (a browser page's: Gradio builds the session's
state, ~16 ms, at its first event, which for a browser is the page load). No gradio_client threads: this process's CPU is measured on its own
(``cpu_s.clients``) and stays small next to the app's. Two rounds, both counted: ``new`` (each
user's first message, a new conversation) and ``edit`` (a second message in the same
conversation, so the request replays the first answer's image: a ~3.3 MB body).

Per round: the wall time from the first join to the last answer, p50/p99 per user, refusals,
the CPU seconds of the app, the emulator and the clients, the app's CPU per answered turn, and
its RSS sampled every 50 ms: before the round, in the middle of the wait (every turn in flight,
waiting for the provider) and at the peak (answers arriving, decoded and stored), each as MB
per in-flight turn above the idle RSS before the round. ``--py-spy`` records the app during the
rounds (``--gil``: only the GIL holder) for ``python -m bench.cpu_breakdown``.

    python -m bench.capacity [--users 256] [--latency-ms 10000] [--tag NAME] [--env NAME=VALUE ...]
                             [--py-spy [--gil]] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.common import (
    ForeignCpu,
    app_process,
    emulator_process,
    percentile,
    queue_event,
    result_path,
    table,
    wait_until_quiet,
    write_json,
    write_photos,
)

NAME = "capacity"
USERS = 256
LATENCY_MS = 10_000.0
TARGET_S = 12.0
#: The per-visitor limits see each user as its own visitor (X-Forwarded-For from a trusted proxy).
DEFAULT_ENV = {"RETOUCH_TRUSTED_PROXIES": "127.0.0.1"}
SAMPLE_S = 0.05
MB = 1 << 20


@dataclass
class Outcome:
    user: int
    joined_at: float = 0.0
    done_at: float = 0.0
    status: str = "no answer"
    transcript: dict[str, Any] | None = None


@dataclass
class User:
    """One visitor: their own client (cookies, connections), address and conversation."""

    index: int
    http: httpx.AsyncClient
    session: str = field(default_factory=lambda: secrets.token_hex(6))  # one page's session, as a browser's
    conversation_id: str = ""
    key: str = ""


@dataclass
class RssSampler:
    """The app's RSS every ``SAMPLE_S`` seconds while running: (seconds since start, bytes)."""

    pid: int
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        process = psutil.Process(self.pid)
        started = time.perf_counter()

        def sample() -> None:
            while not self._stop.wait(SAMPLE_S):
                self.samples.append((time.perf_counter() - started, process.memory_info().rss))

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()

    def at(self, seconds: float) -> int:
        return min(self.samples, key=lambda s: abs(s[0] - seconds))[1] if self.samples else 0

    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def send_fn_index(url: str) -> int:
    """The ``send`` API endpoint's index among the app's events, as the browser reads it from /config."""
    config = httpx.get(f"{url}/config", timeout=30).raise_for_status().json()
    return next(dep["id"] for dep in config["dependencies"] if dep.get("api_name") == "send")


async def send(user: User, fn_index: int, text: str, started: float) -> Outcome:
    """One message through the queue protocol; the outcome's times are seconds after ``started``."""
    outcome = Outcome(user.index)
    data = [user.conversation_id, text, None, None, None, user.key, "", ""]

    def joined(response: httpx.Response) -> None:
        outcome.joined_at = time.perf_counter() - started
        if response.status_code != 200:
            outcome.status = f"refused {response.status_code}: {response.json().get('detail', '')}"[:120]

    try:
        message = await queue_event(user.http, fn_index, data, user.session, joined)
        if message is not None and message.get("msg") == "process_completed":
            output = message.get("output") or {}
            if message.get("success") and output.get("data"):
                outcome.transcript = output["data"][0]
                outcome.status = outcome.transcript["turns"][-1]["status"]
            else:
                outcome.status = f"error: {output.get('error') or output}"[:120]
    except httpx.HTTPError as exc:
        outcome.status = f"transport error: {type(exc).__name__}"
    finally:
        outcome.done_at = time.perf_counter() - started
    return outcome


async def run_round(users: list[User], fn_index: int, prompt: str) -> list[Outcome]:
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(send(u, fn_index, f"{prompt} #{u.index}", started) for u in users))
    for user, outcome in zip(users, outcomes, strict=True):
        if outcome.transcript is not None and not user.conversation_id:
            user.conversation_id = outcome.transcript["conversation_id"]
            user.key = outcome.transcript.get("owner_key", "")
    return outcomes


def make_users(url: str, count: int) -> list[User]:
    # A turn's join and event stream may overlap the previous stream's close: 4 connections each.
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
    timeout = httpx.Timeout(300.0, connect=60.0)
    return [
        User(
            n,
            httpx.AsyncClient(
                base_url=url,
                limits=limits,
                timeout=timeout,
                headers={"X-Forwarded-For": f"198.18.{n // 250}.{n % 250 + 1}"},
            ),
        )
        for n in range(count)
    ]


def summarise(
    outcomes: list[Outcome], cpu: dict[str, float], rss: RssSampler, idle: int, fresh: int, latency_s: float
) -> dict[str, Any]:
    """``idle``: the app's RSS just before this round; ``fresh``: before its first turn (freed memory
    is not given back to the system, so after the first round only the peak above ``fresh`` says
    what the turns in flight hold)."""
    answered = [o for o in outcomes if o.status == "ok"]
    times = sorted(o.done_at for o in answered)
    statuses: dict[str, int] = {}
    for outcome in outcomes:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    waiting, peak = rss.at(latency_s / 2), rss.peak()
    n = len(outcomes)
    return {
        "users": n,
        "answered": len(answered),
        "statuses": statuses,
        "wall_s": round(max(o.done_at for o in outcomes), 2),
        "p50_s": round(percentile(times, 50), 2) if times else None,
        "p99_s": round(percentile(times, 99), 2) if times else None,
        "cpu_s": {name: round(value, 2) for name, value in cpu.items()},
        "app_cpu_ms_per_turn": round(cpu["app"] / max(len(answered), 1) * 1000, 1),
        "rss_mb": {
            "fresh": round(fresh / MB, 1),
            "idle_before": round(idle / MB, 1),
            "waiting": round(waiting / MB, 1),
            "peak": round(peak / MB, 1),
        },
        "mb_per_turn_in_flight": {
            "waiting": round((waiting - idle) / MB / n, 2),
            "peak": round((peak - idle) / MB / n, 2),
            "peak_above_fresh": round((peak - fresh) / MB / n, 2),
        },
    }


@contextmanager
def py_spy(pid: int, out: Path, *, gil: bool) -> Iterator[None]:
    """py-spy on the app while the block runs, its raw stacks in ``out`` (for bench.cpu_breakdown)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [spy, "record", "-p", str(pid), "-r", "100", "--threads", "-f", "raw", "-o", str(out)]
    recorder = subprocess.Popen([*command, *(["--gil"] if gil else [])], stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=120)


async def measure_rounds(
    url: str, users: list[User], pids: dict[str, int], latency_s: float
) -> dict[str, dict[str, Any]]:
    fn_index = send_fn_index(url)
    rounds = {}
    fresh = psutil.Process(pids["app"]).memory_info().rss
    for name, prompt in (("new", "a lighthouse at dusk"), ("edit", "now make the sky pink")):
        await asyncio.sleep(2.0)  # the previous round's last writes and Gradio's clean-up settle
        idle = psutil.Process(pids["app"]).memory_info().rss
        before = {who: cpu_s(pid) for who, pid in pids.items()}
        with RssSampler(pids["app"]).running() as rss:
            outcomes = await run_round(users, fn_index, prompt)
        cpu = {who: cpu_s(pid) - before[who] for who, pid in pids.items()}
        rounds[name] = summarise(outcomes, cpu, rss, idle, fresh, latency_s)
    return rounds


async def run_all(url: str, count: int, pids: dict[str, int], latency_s: float) -> dict[str, Any]:
    users = make_users(url, count)
    try:
        return await measure_rounds(url, users, pids, latency_s)
    finally:
        await asyncio.gather(*(u.http.aclose() for u in users))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--latency-ms", type=float, default=LATENCY_MS)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="app setting")
    parser.add_argument("--tag", help="suffix of the result file (before, after, ...)")
    parser.add_argument("--py-spy", action="store_true", help="record the app with py-spy during the rounds")
    parser.add_argument("--gil", action="store_true", help="py-spy --gil: only the thread holding the GIL")
    parser.add_argument("--quick", action="store_true", help="smoke run: 16 users, 1 s provider")
    parser.add_argument("--max-wait-s", type=float, default=300.0, help="wait this long for a quiet machine")
    args = parser.parse_args(argv)
    users, latency_ms = (16, 1000.0) if args.quick else (args.users, args.latency_ms)
    env = DEFAULT_ENV | dict(item.split("=", 1) for item in args.env)
    name = NAME + (f"_{args.tag}" if args.tag else "")
    quiet = {} if args.quick else wait_until_quiet(timeout_s=args.max_wait_s)
    with (
        tempfile.TemporaryDirectory(prefix="retouch-capacity-") as tmp,
        ForeignCpu() as foreign,
        emulator_process(latency_ms, answer_images=write_photos(Path(tmp) / "answers", 16, 1024)) as emulator,
        app_process(Path(tmp) / "data", emulator.url, extra_env=env, limits={}) as app,
    ):
        pids = {"app": app.pid, "emulator": emulator.pid, "clients": psutil.Process().pid}
        stacks = result_path(f"{name}_app_profile", args.quick, ".collapsed")
        spying = py_spy(app.pid, stacks, gil=args.gil) if args.py_spy else nullcontext()
        with spying:
            rounds = asyncio.run(run_all(app.url, users, pids, latency_ms / 1000))
        app_peak_rss = psutil.Process(app.pid).memory_info().rss
    results = {
        "users": users,
        "provider_latency_ms": latency_ms,
        "target_s": TARGET_S,
        "app_env": env,
        "quiet": quiet,
        "foreign_cpu": foreign.result,
        "app_rss_mb_at_end": round(app_peak_rss / MB, 1),
        "rounds": rounds,
    }
    path = write_json(name, args.quick, results)
    rows = [
        [
            "round",
            "answered",
            "wall s",
            "p50 s",
            "p99 s",
            "CPU s app/emu/clients",
            "app ms/turn",
            "RSS MB idle/wait/peak",
            "MB/turn wait/peak",
        ]
    ]
    for round_name, r in rounds.items():
        cpu, rss, per = r["cpu_s"], r["rss_mb"], r["mb_per_turn_in_flight"]
        rows.append(
            [
                round_name,
                f"{r['answered']}/{r['users']}",
                r["wall_s"],
                r["p50_s"],
                r["p99_s"],
                f"{cpu['app']}/{cpu['emulator']}/{cpu['clients']}",
                r["app_cpu_ms_per_turn"],
                f"{rss['idle_before']}/{rss['waiting']}/{rss['peak']}",
                f"{per['waiting']}/{per['peak']}/{per['peak_above_fresh']}",
            ]
        )
    print(table(rows))  # noqa: T201 - the summary
    print(f"statuses: {[r['statuses'] for r in rounds.values()]}\nwritten: {path}")  # noqa: T201


if __name__ == "__main__":
    main()
