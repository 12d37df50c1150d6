"""Run the real app (``python app.py``) as a new user would, pointed at the emulator.

The one place tests start app processes: ``running_app``, ``app_process`` and ``app_run`` start
``python app.py`` from the checkout; ``launched`` runs any command line of it (e.g. the Docker
image's CMD from a replayed build context).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

__all__ = ["AppRun", "app_env", "app_process", "app_run", "free_port", "launched", "running_app"]

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(data_dir: Path, emulator_url: str, **extra: str) -> dict[str, str]:
    """The environment tests and benchmarks run the app with: both providers at the emulator."""
    return {
        **os.environ,
        "RETOUCH_DATA_DIR": str(data_dir),
        "GEMINI_BASE_URL": emulator_url,
        "GEMINI_API_KEY": "test-key",
        "OPENAI_BASE_URL": f"{emulator_url}/v1",
        "OPENAI_API_KEY": "test-key",
        "RETOUCH_RETRY_BASE_DELAY": "0",  # retries are counted, not waited for
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@contextmanager
def running_app(data_dir: Path, emulator_url: str, **env: str) -> Iterator[str]:
    """Start ``python app.py`` as a new user would, and wait for its "Running on" line."""
    with app_process(data_dir, emulator_url, **env) as (url, _process):
        yield url


@dataclass
class AppRun:
    """A started app: its URL (ending in ``/``), its process and every line it has logged so far."""

    url: str
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    def log_text(self) -> str:
        return "".join(self.log)

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])

    def get(self, path: str) -> httpx.Response:
        """``GET`` a path of the app (``"/healthz"``)."""
        return httpx.get(self.url + path.lstrip("/"), timeout=10)

    def wait_until(self, predicate: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
        """Poll ``predicate``; fail with the log if the app exits or ``timeout_s`` passes first."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gave up waiting for {what}; app log:\n{self.log_text()}")
            time.sleep(0.05)

    def exit_code_after(self, sig: signal.Signals, timeout_s: float) -> tuple[int, float]:
        """Send ``sig``; the exit code and how long the app took to exit."""
        started = time.monotonic()
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout_s)
        return code, time.monotonic() - started


@contextmanager
def app_process(
    data_dir: Path, emulator_url: str, **extra_env: str
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Like ``running_app``, also handing over the process (to kill it mid-turn); ``extra_env`` adds settings."""
    with app_run(data_dir, emulator_url, **extra_env) as run:
        yield run.url, run.process


@contextmanager
def app_run(data_dir: Path, emulator_url: str, **extra_env: str) -> Iterator[AppRun]:
    """Start ``python app.py`` on a free port; the log keeps filling while the app runs."""
    port = free_port()
    env = app_env(data_dir, emulator_url, **{"RETOUCH_PORT": str(port), **extra_env})
    with launched([sys.executable, "app.py"], ROOT, env, port) as run:
        yield run


@contextmanager
def launched(
    argv: list[str],
    cwd: Path,
    env: Mapping[str, str],
    port: int,
    *,
    until_healthy: bool = False,
    kill: bool = False,
) -> Iterator[AppRun]:
    """Run ``argv`` (an app serving on ``port``) in ``cwd``; yield once it logs "Running on local URL"
    or, ``until_healthy``, once ``/healthz`` answers. On the way out it is stopped (SIGTERM), or
    killed if ``kill``."""
    process = subprocess.Popen(
        argv, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    run = AppRun(f"http://127.0.0.1:{port}/", process)
    try:
        assert process.stdout is not None
        if until_healthy:
            threading.Thread(target=run.log.extend, args=(process.stdout,), daemon=True).start()
            run.wait_until(lambda: _answers(run.url + "healthz"), "/healthz", STARTUP_TIMEOUT_S)
        else:
            for line in process.stdout:
                run.log.append(line)
                if "Running on local URL" in line:
                    break
            else:
                pytest.fail("app exited before starting:\n" + run.log_text())
            # Keep reading its log so a full pipe never blocks the app.
            threading.Thread(target=run.log.extend, args=(process.stdout,), daemon=True).start()
        yield run
    finally:
        if process.poll() is None:
            if kill:
                process.kill()
            else:
                process.terminate()
        process.wait(timeout=STARTUP_TIMEOUT_S)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.TransportError:
        return False
    return True
