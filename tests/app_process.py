"""Run the real app (``python app.py``) as a new user would, pointed at the emulator."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["AppRun", "app_env", "app_process", "app_run", "free_port", "running_app"]

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
    """A started app: its URL, its process and every line it has logged so far."""

    url: str
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    def log_text(self) -> str:
        return "".join(self.log)


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
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run = AppRun(f"http://127.0.0.1:{port}/", process)
    try:
        assert process.stdout is not None
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
            process.terminate()
        process.wait(timeout=STARTUP_TIMEOUT_S)
