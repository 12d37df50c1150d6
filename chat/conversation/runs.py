"""The turns this process is answering, each in a task of its own, and the pages that follow them.

A turn outlives the page that started it: the user may reload or close the tab while the
model works, and the answer must still be stored. Gradio closes an event's generator when its
browser goes away (``aclose``, a ``GeneratorExit`` at the step it waits at), so the work cannot
live in that generator. Here it runs in a task; the generator only follows it (``follow``):

- the page goes away (the generator is closed): the turn goes on and stores its answer;
- the follower is cancelled (Gradio's ``/cancel``, a gradio_client ``Job.cancel()``) or someone
  with write access presses Stop (``stop``): the turn's task is cancelled, which the service
  turns into a stopped answer (the provider call ended, its socket shut: chat/providers/http.py).

What a turn shows goes through a ``Mailbox``: the message stored and the answer are always
delivered, while progress snapshots replace one another until the follower takes them, so a
slow page sees the newest and nothing piles up. Everything runs on the event loop; snapshots
from the provider call's worker thread come in through ``ProgressBoard``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from chat.domain import Progress, ProgressSink

__all__ = ["Mailbox", "ProgressBoard", "TurnRuns", "Update"]

T = TypeVar("T")


@dataclass(frozen=True)
class Update(Generic[T]):
    """One thing a turn shows: ``passing`` ones (progress) may be replaced by the next passing one."""

    value: T
    passing: bool = False


class Mailbox(Generic[T]):
    """Updates from a turn's task to its follower, in order; a passing update not yet taken gives way to the next.

    It also keeps the newest value put and how many were put, for pages that watch the turn
    without following it (``TurnRuns.newest``): they read it, they never take from the box.
    """

    def __init__(self) -> None:
        self._items: deque[Update[T]] = deque()
        self._ready = asyncio.Event()
        self.closed = False
        self.newest: T | None = None
        self.puts = 0

    def put(self, update: Update[T]) -> None:
        self.newest, self.puts = update.value, self.puts + 1
        if self._items and self._items[-1].passing and update.passing:
            self._items[-1] = update
        else:
            self._items.append(update)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def take(self) -> Update[T] | None:
        """The next update, or None once the turn has ended and everything was taken."""
        while not self._items:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class ProgressBoard:
    """The newest snapshot of each of a turn's calls (one per variant), fed from worker threads.

    ``sink(i)`` is what call ``i`` reports to; each report is handed to the event loop
    (``call_soon_threadsafe``) and calls ``changed`` there with every call's newest snapshot.
    """

    def __init__(self, calls: int, changed: Callable[[tuple[Progress | None, ...]], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._latest: list[Progress | None] = [None] * calls
        self._changed = changed

    def sink(self, index: int) -> ProgressSink:
        def report(snapshot: Progress) -> None:
            self._loop.call_soon_threadsafe(self._set, index, snapshot)

        return report

    def _set(self, index: int, snapshot: Progress) -> None:
        self._latest[index] = snapshot
        self._changed(tuple(self._latest))


class TurnRuns(Generic[T]):
    """This process's running turns, by conversation: started, followed, watched, stopped, waited for."""

    def __init__(self) -> None:
        self._running: dict[str, set[asyncio.Task[None]]] = {}  # a conversation's turns queue for its lease
        self._boxes: dict[asyncio.Task[None], Mailbox[T]] = {}
        self._count = 0  # read from other threads (a draining app's main thread): one int, never a dict walk

    def __len__(self) -> int:
        return self._count

    def start(self, conversation_id: str, work: Callable[[Mailbox[T]], Awaitable[None]]) -> AsyncIterator[T]:
        """Run ``work`` (which puts what it shows in its mailbox) in a task; follow it with the iterator."""
        mailbox: Mailbox[T] = Mailbox()

        async def run() -> None:
            try:
                await work(mailbox)
            finally:
                mailbox.close()

        task = asyncio.ensure_future(run())
        self._running.setdefault(conversation_id, set()).add(task)
        self._boxes[task] = mailbox
        self._count += 1
        task.add_done_callback(lambda done: self._forget(conversation_id, done))
        return self._follow(task, mailbox)

    def newest(self, conversation_id: str) -> tuple[int, T] | None:
        """What the conversation's running turn here showed last, and how many things it has shown
        (a watcher's cheap "anything new?"); None if none of its turns here has shown anything."""
        shown = [self._boxes[task] for task in self._running.get(conversation_id, ())]
        box = max(shown, key=lambda each: each.puts, default=None)
        if box is None or box.newest is None:
            return None
        return box.puts, box.newest

    async def stop(self, conversation_id: str) -> bool:
        """Cancel the conversation's turns (the one answering and any waiting for it) and wait until
        they have stored what they store; False if none runs here."""
        tasks = set(self._running.get(conversation_id, ()))
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        return bool(tasks)

    async def wait_all(self) -> None:
        """Until every running turn has ended (a draining replica's last answers)."""
        while self._running:
            await asyncio.wait({task for tasks in self._running.values() for task in tasks})

    def _forget(self, conversation_id: str, task: asyncio.Task[None]) -> None:
        tasks = self._running.get(conversation_id, set())
        tasks.discard(task)
        self._boxes.pop(task, None)
        self._count -= 1
        if not tasks:
            self._running.pop(conversation_id, None)
        if not task.cancelled():
            task.exception()  # retrieved here; the follower re-raises it (or it went away)

    async def _follow(self, task: asyncio.Task[None], mailbox: Mailbox[T]) -> AsyncIterator[T]:
        """What the turn shows, then its error if it failed. Closed early (the page went away), the
        turn goes on; cancelled (the caller asked to stop), the turn is stopped and waited for."""
        try:
            while (update := await mailbox.take()) is not None:
                yield update.value
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.wait({task})
            raise
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
