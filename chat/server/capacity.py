"""What one process takes on at once, all derived from ``RETOUCH_MODEL_CONCURRENCY``.

A turn spends nearly all its time waiting for the provider (10 s or more for an image), so the
number of turns in flight is bounded by what the provider and memory allow, not by CPU. The
setting is the cap on model calls in flight (Gradio's concurrency group "model"); the limits
below are set from it so that none of them is a lower, hidden cap:

- Gradio runs at most ``launch(max_threads=...)`` events at once, whatever their concurrency
  limits (the pinned 6.x makes its queue's worker slots from it; 40 by default): the model calls
  plus ``SPARE_EVENTS`` for everything else a page does while they run (opening a
  conversation, a fork, an import).
- The HTTP pool holds one connection per call thread (``CallThreads``: one per call in flight),
  kept alive between calls: a call never waits for a connection, nor pays a new TLS handshake.
- Gradio keeps every session's state (a copy of every block's config: ~190 KB for this UI) up to
  ``launch(state_session_capacity=...)``, 10000 by default: up to 1.9 GB, more than the turns.
  This UI keeps nothing in it that a page does not send again with each event (no ``gr.State``;
  the owner id is a ``BrowserState``), so a session evicted while its page stays open costs only
  a new copy at its next event; ``sessions`` keeps two per turn in flight or waiting.
- Each turn in flight holds sockets (the browser's event stream, its provider call) and each
  waiting one its event stream, so the open-file soft limit (often 1024) is raised toward the
  hard limit at start (``raise_open_file_limit``).

Memory is the other bound. bench/capacity.py measures the app's RSS per turn in flight at its
peak (the answers arriving: each a ~3.3 MB JSON body, its decoded image and the stored PNG):
``PEAK_MB_PER_TURN`` (4.4 to 5.8 MB measured; a turn only waiting holds ~0.3 MB). The default of
256 turns therefore needs about 256 x 6 MB = 1.5 GB above the app's idle ~200 MB, and the
sessions' state 1024 x 0.19 MB = 0.2 GB: ~1.9 GB in all. A smaller machine sets
``RETOUCH_MODEL_CONCURRENCY`` lower (``memory_bound`` says how many fit), and the start-up log
warns when the setting does not fit.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "PEAK_MB_PER_TURN",
    "SESSION_MB",
    "SPARE_EVENTS",
    "Capacity",
    "memory_available_mb",
    "memory_bound",
    "raise_open_file_limit",
]

log = logging.getLogger("retouch.capacity")

#: Gradio events beyond the model calls that may run at once (page loads, library actions, copies).
SPARE_EVENTS = 40
#: RSS per turn in flight at its peak, rounded up from bench/capacity.py (bench/RESULTS.md, issue 14 capacity).
PEAK_MB_PER_TURN = 6.0
#: What the app holds before any turn (Gradio, SQLAlchemy, Pillow, the UI): bench/capacity.py's idle RSS.
IDLE_MB = 200.0
#: One Gradio session's state for this UI (tracemalloc of ``SessionState``, bench/RESULTS.md).
SESSION_MB = 0.19
#: File descriptors per turn in flight (its event stream, its join, its provider call) and per waiting one.
FDS_PER_TURN = 3
FDS_BASE = 256


@dataclass(frozen=True)
class Capacity:
    """The limits of one process for ``model_concurrency`` model calls in flight and ``queue_max_size`` waiting."""

    model_concurrency: int
    queue_max_size: int

    @property
    def max_threads(self) -> int:
        """Gradio's ``launch(max_threads=...)``: every model call, and the rest of the page besides."""
        return self.model_concurrency + SPARE_EVENTS

    @property
    def sessions(self) -> int:
        """Gradio's ``launch(state_session_capacity=...)``: the sessions whose state it keeps."""
        return 2 * (self.model_concurrency + self.queue_max_size)

    def http_limits(self) -> httpx.Limits:
        """One pooled connection per call thread, kept alive between calls."""
        return httpx.Limits(
            max_connections=self.model_concurrency, max_keepalive_connections=self.model_concurrency
        )

    @property
    def open_files(self) -> int:
        """File descriptors the turns in flight and waiting may hold, with room for the rest."""
        return FDS_BASE + FDS_PER_TURN * (self.model_concurrency + self.queue_max_size)

    @property
    def memory_mb(self) -> float:
        """RSS with every model call in flight at its peak and every session's state kept."""
        return IDLE_MB + PEAK_MB_PER_TURN * self.model_concurrency + SESSION_MB * self.sessions

    def check(self) -> None:
        """Raise the open-file limit; warn (once, at start) where this machine cannot hold the turns."""
        soft = raise_open_file_limit(self.open_files)
        if soft < self.open_files:
            log.warning(
                "open-file limit %d is below the %d that %d turns in flight and %d waiting may need: "
                "raise it (ulimit -n) or lower RETOUCH_MODEL_CONCURRENCY / RETOUCH_QUEUE_MAX_SIZE",
                soft,
                self.open_files,
                self.model_concurrency,
                self.queue_max_size,
            )
        available = memory_available_mb()
        if available is not None and self.memory_mb > available:
            log.warning(
                "%d turns in flight may need %.0f MB (%.0f MB each at their peak), more than the %.0f MB "
                "available: lower RETOUCH_MODEL_CONCURRENCY to %d",
                self.model_concurrency,
                self.memory_mb,
                PEAK_MB_PER_TURN,
                available,
                memory_bound(available),
            )


def memory_bound(available_mb: float) -> int:
    """How many turns in flight fit in ``available_mb`` of memory at their peak, with as many waiting
    and their sessions (at least 1)."""
    per_turn = PEAK_MB_PER_TURN + 4 * SESSION_MB
    return max(1, int((available_mb - IDLE_MB) // per_turn))


def raise_open_file_limit(wanted: int) -> int:
    """Raise the soft open-file limit toward ``wanted`` (never above the hard limit, never lower); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft if soft != resource.RLIM_INFINITY else wanted


def memory_available_mb(
    cgroup: Path = Path("/sys/fs/cgroup/memory.max"), meminfo: Path = Path("/proc/meminfo")
) -> float | None:
    """The container's memory limit (cgroup v2) if it has one, else the machine's MemAvailable; None if unknown."""
    try:
        limit = cgroup.read_text().strip()
        if limit != "max":
            return int(limit) / 2**20
    except (OSError, ValueError):
        pass
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None
