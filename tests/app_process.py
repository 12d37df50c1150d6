"""Run the real app (``python app.py``) as a new user would, pointed at the emulator."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["app_env", "app_process", "free_port", "running_app"]

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


@contextmanager
def app_process(
    data_dir: Path, emulator_url: str, **extra_env: str
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Like ``running_app``, also handing over the process (to kill it mid-turn); ``extra_env`` adds settings."""
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
    try:
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Running on local URL" in line:
                break
        else:
            pytest.fail("app exited before starting:\n" + "".join(lines))
        # Keep reading its log so a full pipe never blocks the app.
        threading.Thread(target=lines.extend, args=(process.stdout,), daemon=True).start()
        yield f"http://127.0.0.1:{port}/", process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=STARTUP_TIMEOUT_S)
