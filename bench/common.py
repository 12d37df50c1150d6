"""Shared pieces of the benchmarks: machine facts, result files, photo-like images, subprocesses.

- :func:`machine` records what RESULTS.md needs (date, ``uname -a``, CPU, cores, RAM, git commit).
- :func:`photo` makes a deterministic photo-like picture (1/f "pink" noise over a sky-to-ground
  gradient): natural photos have a roughly 1/f spectrum, so it compresses like one (a 1024x1024
  JPEG q90 is about 0.45 MB, a PNG about 2.4 MB), unlike a flat test colour.
- :func:`emulator_process` and :func:`app_process` start ``python -m tests.emulator`` and
  ``python app.py`` as a user would (same environment as ``tests/app_process.py``) and stop
  exactly the processes they started.
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from tests.app_process import app_env, free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
#: High enough that the app's abuse limits never refuse a benchmark request.
NO_LIMITS = {
    "RETOUCH_RATE_PER_MINUTE": "10000",
    "RETOUCH_RATE_PER_DAY": "100000",
    "RETOUCH_GLOBAL_RATE_PER_MINUTE": "10000",
    "RETOUCH_QUEUE_MAX_SIZE": "256",
}


# --- Gradio's browser protocol --------------------------------------------------------------


async def queue_event(
    http: httpx.AsyncClient,
    fn_index: int,
    data: list[Any],
    session_hash: str,
    joined: Callable[[httpx.Response], None] = lambda response: None,
) -> dict[str, Any] | None:
    """One event as a browser sends it: ``POST gradio_api/queue/join``, then the
    ``gradio_api/queue/data`` event stream until the event ends.

    ``joined`` sees the join's response as it comes; a join refused (not 200) ends the event.
    The event's last message comes back (``process_completed``, or ``unexpected_error``), or None
    when there is none (a refused join, a stream that ended without one). Transport errors are
    the caller's to count.
    """
    body = {
        "data": data,
        "event_data": None,
        "fn_index": fn_index,
        "trigger_id": None,
        "session_hash": session_hash,
    }
    response = await http.post("gradio_api/queue/join", json=body)
    joined(response)
    if response.status_code != 200:
        return None
    async with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
        async for line in stream.aiter_lines():
            if not line.startswith("data:"):
                continue
            message: dict[str, Any] = json.loads(line[5:])
            if message.get("msg") in ("process_completed", "unexpected_error"):
                return message
    return None


# --- facts and files -----------------------------------------------------------------------


def _run(args: Sequence[str]) -> str:
    try:
        return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout.rstrip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine() -> dict[str, Any]:
    """The facts RESULTS.md records next to every figure."""
    cpu = ""
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    dirty = [line[3:] for line in _run(["git", "status", "--porcelain"]).splitlines() if line[3:]]
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "uname": _run(["uname", "-a"]),
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
        "git_commit": _run(["git", "rev-parse", "HEAD"]),
        "git_dirty_paths": [p for p in dirty if not p.startswith("bench/")],
        "command": " ".join([Path(sys.executable).name, "-m", *_module_argv()]),
    }


def wait_until_quiet(max_busy_percent: float = 20.0, timeout_s: float = 900.0) -> dict[str, Any]:
    """Wait (up to ``timeout_s``) until the machine's CPUs are mostly idle, so others' work skews less.

    Other sessions may run their test suites on the same machine; the figures are only
    comparable when nothing else is busy. Returns what was seen, for the result file.
    """
    import psutil

    started = time.perf_counter()
    busy = psutil.cpu_percent(interval=2.0)
    while busy > max_busy_percent and time.perf_counter() - started < timeout_s:
        busy = psutil.cpu_percent(interval=5.0)
    return {
        "waited_s": round(time.perf_counter() - started, 1),
        "cpu_busy_percent_at_start": busy,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


class ForeignCpu:
    """CPU seconds used on the machine by processes other than this one and its children, while running.

    Sampled every second: the machine's busy time minus our process tree's CPU time (children
    that exit between samples are counted up to their last sample), so an approximation.
    """

    def __init__(self) -> None:
        self.result: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ForeignCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        seen: dict[int, float] = {}

        def own() -> float:
            for process in [me, *me.children(recursive=True)]:
                try:
                    cpu = process.cpu_times()
                    seen[process.pid] = cpu.user + cpu.system  # reaped children are in ``seen`` already
                except psutil.Error:
                    pass
            return sum(seen.values())

        def busy() -> float:
            t = psutil.cpu_times()
            return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)

        started, busy0, own0 = time.perf_counter(), busy(), own()
        while not self._stop.wait(1.0):
            own()
        foreign = (busy() - busy0) - (own() - own0)
        wall = time.perf_counter() - started
        self.result = {
            "wall_s": round(wall, 1),
            "foreign_cpu_s": round(max(0.0, foreign), 1),
            "foreign_cpu_share_of_machine": round(max(0.0, foreign) / (wall * (os.cpu_count() or 1)), 3),
        }


def _module_argv() -> list[str]:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = spec.name if spec is not None else Path(sys.argv[0]).stem
    return [name, *sys.argv[1:]]


def result_path(name: str, quick: bool, suffix: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return RESULTS_DIR / f"{name}{'_quick' if quick else ''}{suffix}"


def write_json(name: str, quick: bool, data: Mapping[str, Any]) -> Path:
    path = result_path(name, quick, ".json")
    facts = {**machine(), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
    path.write_text(json.dumps({"machine": facts, **data}, indent=2) + "\n")
    return path


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in 0..100."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2) if ms else float("nan"),
        "mean_ms": round(sum(ms) / len(ms), 2) if ms else float("nan"),
    }


def table(rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (first row is the header) for the summary printed at the end."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Every benchmark's plot: laid out, written at the same resolution, and closed."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)


# --- images --------------------------------------------------------------------------------


def photo(size: int = 1024, seed: int = 0, slope: float = 1.2) -> Image.Image:
    """A deterministic photo-like RGB picture: 1/f^slope noise plus a vertical light gradient."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    freq = np.sqrt(fx**2 + fy**2)
    freq[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=freq.shape) + 1j * rng.normal(size=freq.shape)) / freq**slope
        spectrum[0, 0] = 0
        channels.append(np.fft.irfft2(spectrum, s=(size, size)))
    noise = np.stack(channels, axis=-1)
    noise = (noise - noise.mean()) / noise.std()
    gradient = np.linspace(60, -40, size)[:, None, None]
    return Image.fromarray(np.clip(128 + 45 * noise + gradient, 0, 255).astype(np.uint8), "RGB")


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def write_photos(directory: Path, count: int, size: int, seed: int = 5000) -> Path:
    """``count`` distinct photo-like PNGs (``size`` square) in ``directory``, for the emulator to answer with."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (directory / f"answer-{index:03d}.png").write_bytes(png_bytes(photo(size, seed + index)))
    return directory


def png_bytes(image: Image.Image) -> bytes:

    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


# --- subprocesses --------------------------------------------------------------------------


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM the process we started (the app drains and exits 0), SIGKILL it if it hangs."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


@dataclass(frozen=True)
class Emulator:
    url: str
    pid: int


@contextmanager
def emulator_process(
    latency_ms: float = 0,
    log_path: Path | None = None,
    answer_images: Path | None = None,
    chunk_delay_ms: float = 0,
) -> Iterator[Emulator]:
    """``python -m tests.emulator --port 0 --latency-ms L``; yields its URL (the last word it prints).

    ``answer_images``: a directory of images Gemini answers with in turn, instead of rendering;
    ``chunk_delay_ms``: the wait between a streamed answer's chunks.
    """
    log = open(log_path or os.devnull, "w")  # noqa: SIM115 - closed below, after the process
    stock = ["--answer-images", str(answer_images)] if answer_images else []
    drip = ["--chunk-delay-ms", str(chunk_delay_ms)] if chunk_delay_ms else []
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.emulator",
            "--port",
            "0",
            "--latency-ms",
            str(latency_ms),
            *stock,
            *drip,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the emulator did not start: {line!r}")
        threading.Thread(target=process.stdout.read, daemon=True).start()
        url = line.strip().rsplit(" ", 1)[1]
        wait_http(f"{url}/_emulator/health")
        yield Emulator(url, process.pid)
    finally:
        stop(process)
        log.close()


@dataclass(frozen=True)
class AppProcess:
    url: str
    process: subprocess.Popen[Any]
    spawned_at: float  # time.perf_counter() just before Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def app_process(
    data_dir: Path,
    emulator_url: str,
    *,
    extra_env: Mapping[str, str] | None = None,
    wait: bool = True,
    limits: Mapping[str, str] = NO_LIMITS,
) -> Iterator[AppProcess]:
    """``python app.py`` on a free port, its log in ``data_dir/../app.log``; waits for /healthz if ``wait``.

    ``limits``: the abuse limits lifted out of the way (``{}``: the app's own defaults).
    """
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"app-{port}.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    spawned_at = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=app_env(data_dir, emulator_url, **{"RETOUCH_PORT": str(port), **limits, **(extra_env or {})}),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        app = AppProcess(f"http://127.0.0.1:{port}", process, spawned_at, log_path)
        if wait:
            wait_http(f"{app.url}/healthz", process=process)
        yield app
    finally:
        stop(process)
        log.close()


def wait_http(
    url: str, *, process: subprocess.Popen[Any] | None = None, timeout_s: float = STARTUP_TIMEOUT_S
) -> float:
    """Poll ``url`` every 10 ms until it answers 200; returns time.perf_counter() of that answer."""
    deadline = time.perf_counter() + timeout_s
    with httpx.Client(timeout=5) as client:
        while time.perf_counter() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
            try:
                if client.get(url).status_code == 200:
                    return time.perf_counter()
            except httpx.TransportError:
                pass
            time.sleep(0.01)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s} s")
