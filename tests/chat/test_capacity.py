"""One process's limits, all derived from the model concurrency: none of them a lower, hidden cap."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from chat.server.capacity import (
    IDLE_MB,
    PEAK_MB_PER_TURN,
    SESSION_MB,
    SPARE_EVENTS,
    Capacity,
    memory_available_mb,
    memory_bound,
    raise_open_file_limit,
)


def test_every_limit_follows_the_model_concurrency() -> None:
    capacity = Capacity(model_concurrency=256, queue_max_size=256)
    assert capacity.max_threads == 256 + SPARE_EVENTS  # Gradio's worker slots: every model call, and more
    limits = capacity.http_limits()
    assert limits.max_connections == limits.max_keepalive_connections == 256  # one per call thread
    assert capacity.open_files >= 3 * (256 + 256)
    assert capacity.sessions == 2 * (256 + 256)  # Gradio's sessions kept: not its 10000 (1.9 GB)
    assert capacity.memory_mb == IDLE_MB + 256 * PEAK_MB_PER_TURN + capacity.sessions * SESSION_MB


def test_memory_bound_is_how_many_turns_fit_and_at_least_one() -> None:
    assert memory_bound(IDLE_MB + 10.5 * (PEAK_MB_PER_TURN + 4 * SESSION_MB)) == 10
    assert memory_bound(IDLE_MB / 2) == 1
    assert Capacity(memory_bound(2048), 1).memory_mb <= 2048


def test_memory_available_reads_the_container_limit_first(tmp_path: Path) -> None:
    cgroup, meminfo = tmp_path / "memory.max", tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 16384000 kB\nMemAvailable: 8192000 kB\n")
    cgroup.write_text(f"{2 * 2**30}\n")
    assert memory_available_mb(cgroup, meminfo) == 2048
    cgroup.write_text("max\n")
    assert memory_available_mb(cgroup, meminfo) == 8000
    assert memory_available_mb(tmp_path / "none", tmp_path / "neither") is None


@pytest.fixture
def open_files():
    """The test changes this process's soft limit: put it back."""
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield saved
    resource.setrlimit(resource.RLIMIT_NOFILE, saved)


def test_the_open_file_limit_is_raised_toward_the_hard_limit_never_lowered(open_files) -> None:
    soft, hard = open_files
    if hard != resource.RLIM_INFINITY and hard < 64:
        pytest.skip(f"hard open-file limit {hard} leaves no room to test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (32, hard))
    assert raise_open_file_limit(48) == 48
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 48
    assert raise_open_file_limit(40) == 48  # never lowered
    beyond = raise_open_file_limit(hard + 1 if hard != resource.RLIM_INFINITY else 1 << 20)
    assert beyond == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert hard == resource.RLIM_INFINITY or beyond == hard
