"""Graceful shutdown: let the model calls users are waiting for finish, then exit 0.

Docker and Hugging Face Spaces stop a container with SIGTERM (and SIGKILL after their own
timeout); a developer presses Ctrl-C. A turn can take a minute and its model call is paid
for, so dying mid-call loses an answer the user never sees. On the first SIGTERM or SIGINT:

1. ``/healthz`` answers 503 so a balancer routes elsewhere. Behind one, new work keeps being
   taken for ``RETOUCH_SHUTDOWN_NOTICE_S`` (the notice: as long as the balancer's health checks
   take to notice), since until then the balancer still sends this replica requests of
   sessions it holds, which no other replica could serve; a second signal ends the notice.
2. Stop taking new work. Requests that could start some (every method but GET, HEAD and
   OPTIONS: queue joins, uploads, API calls) get 503 with ``Retry-After``. GETs still pass,
   so the running jobs' event streams and image files keep flowing.
3. Wait until Gradio's queue has no waiting or running job: at most the grace period
   (``RETOUCH_SHUTDOWN_GRACE``), or until a second signal says "now".
4. Stop the HTTP server, giving open streams a moment to deliver the last answers.
5. The caller logs one line and returns, so the process exits 0.

This module does not know Gradio (only ASGI, for the gate): the server it drains and stops is a
``Server`` (how many jobs are queued or running; stop). Gradio installs no signal handlers (its uvicorn server runs
in a daemon thread; ``launch()`` only catches KeyboardInterrupt) and has no public "how busy am
I" or "stop gracefully" API, so app.py's ``GradioServer`` is the one place that reads the queue
and server of the pinned gradio; tests/test_deploy.py proves it against a real process. Signal
handlers only set attributes: taking a lock inside one could deadlock with the main thread
holding it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DrainGate", "DrainReport", "Lifecycle", "Server"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Server(Protocol):
    """The running web server, as the lifecycle sees it."""

    def jobs(self) -> int:
        """Events waiting in, or being run by, the server's queue."""
        ...

    def stop(self) -> None:
        """Stop serving: let open responses finish for a moment, then close."""
        ...


@dataclass(frozen=True)
class DrainReport:
    signal: str
    jobs: int  # the most jobs seen waiting or running while draining
    jobs_left: int  # still running when the wait ended (they are cut off)
    waited_s: float
    grace_s: float

    def summary(self) -> str:
        """The one line logged at shutdown."""
        head = f"Stopped on {self.signal} after {self.waited_s:.1f} s"
        if self.jobs == 0:
            return f"{head}: no job was running"
        if self.jobs_left == 0:
            return f"{head}: {_jobs(self.jobs)} finished"
        return f"{head}: {_jobs(self.jobs_left)} cut off (grace {self.grace_s:g} s, {self.jobs - self.jobs_left} finished)"


class Lifecycle:
    """The shutdown state shared by the signal handlers, the main thread and the server thread."""

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float = 0.1,
        notice_s: float = 0.0,
    ) -> None:
        self.signal_name: str | None = None
        self._signals = 0
        self._sleep = sleep
        self._clock = clock
        self._poll_s = poll_s
        self._notice_s = notice_s
        self._notice_over = notice_s <= 0

    @property
    def draining(self) -> bool:
        """A stop was asked for: ``/healthz`` says so from now on."""
        return self._signals > 0

    @property
    def refusing(self) -> bool:
        """New work is refused: the notice is over (or a second signal cut it short)."""
        return self._signals > 1 or (self._signals > 0 and self._notice_over)

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT start a graceful stop; a second one ends the wait. Main thread only."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def request_stop(self, reason: str) -> None:
        self._signals += 1
        if self.signal_name is None:
            self.signal_name = reason

    def wait_for_stop(self) -> str:
        """Block until a stop is requested; return its name (e.g. ``"SIGTERM"``)."""
        while self.signal_name is None:
            self._sleep(self._poll_s)
        return self.signal_name

    def drain(self, jobs: Callable[[], int], grace_s: float) -> DrainReport:
        """Wait for ``jobs()`` to reach 0, at most ``grace_s`` seconds or until a second signal."""
        started = self._clock()
        left = most = jobs()
        while left and self._clock() - started < grace_s and self._signals < 2:
            self._sleep(self._poll_s)
            left = jobs()
            most = max(most, left)
        waited = self._clock() - started
        return DrainReport(self.signal_name or "stop", most, left, waited, grace_s)

    def give_notice(self) -> None:
        """Step 1: keep taking work for the notice period, unless a second signal comes first."""
        started = self._clock()
        while self._clock() - started < self._notice_s and self._signals < 2:
            self._sleep(self._poll_s)
        self._notice_over = True

    def shutdown(self, server: Server, grace_s: float) -> DrainReport:
        """Steps 1 to 4: the notice, then drain ``server``'s jobs (see ``drain``) and stop it, finished or not."""
        try:
            self.give_notice()
            return self.drain(server.jobs, grace_s)
        finally:
            server.stop()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.request_stop(signal.Signals(signum).name)


class DrainGate:
    """ASGI middleware: once the notice is over, refuse every request that could start new work."""

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle, retry_after_s: int = 30) -> None:
        self.app = app
        self._lifecycle = lifecycle
        self._retry_after = str(retry_after_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._lifecycle.refusing and scope["method"] not in SAFE_METHODS:
            response = JSONResponse(
                {"detail": "Retouch is restarting. Please try again in a minute."},
                status_code=503,
                headers={"Retry-After": self._retry_after},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"
