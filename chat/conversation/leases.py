"""One turn at a time per conversation, on every replica: a lease row in the database.

A turn first takes this process's lock on the conversation, so turns in one process queue on it
without polling; then the conversation's row in ``conversation_lease``, taken by one atomic upsert
that succeeds only where no live lease is (``storage.repository.acquire_lease``), polled with a
growing pause while another replica's turn holds it. The lease is a row, never a transaction:
nothing stays open across the provider call. While the turn runs its lease is renewed every third
of the ttl; it is deleted in the transaction that stores the answer (``Lease.release``), or when
the turn ends otherwise. A replica that dies leaves a row that expires after the ttl: until then
every replica shows the unanswered message as in progress, after that as interrupted, and the next
turn takes the lease over.

The transaction that takes the lease also runs the caller's check (who may write) and reads the
conversation's stored version (its turn count, and its revision: changes that add no turn), so a copy kept in memory is checked against it
under the lease and a waiting turn sees the turn before it, whichever replica wrote that.

A renewal that finds the lease gone (the replica stalled, or lost the database, for a whole ttl,
and another replica took the conversation over) is logged and renewing stops; the turn goes on
(its answer may already be paid for) and the writer stores it only if nothing was appended
meanwhile (``storage.repository.append_to`` refuses otherwise), so a lost lease never puts a turn
after someone else's. Expiry compares times written by different replicas: their clocks must agree
to well within a ttl (NTP does).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from chat.config import DEFAULTS
from chat.errors import AccessError, BusyError, ConversationNotFoundError
from chat.sharing.access import GONE
from storage import repository as repo
from storage import session_scope

__all__ = ["Lease", "Leases", "replica_id"]

log = logging.getLogger("retouch.leases")

T = TypeVar("T")
R = TypeVar("R")

#: The first pause between two tries for a lease another replica holds, and the longest.
FIRST_PAUSE_S = 0.05
LONGEST_PAUSE_S = 0.5


def replica_id() -> str:
    """Which process holds a lease, for an operator reading the table: host and process id
    (a lease's holder adds 33 characters: it must fit the column's 100)."""
    return f"{socket.gethostname()[:48]}:{os.getpid()}"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class Lease(Generic[T]):
    """One turn's hold on its conversation.

    ``checked`` is what the caller's check returned in the transaction that took it; ``turn_count``
    and ``revision`` the conversation's stored version then (None for a conversation its first
    write creates, which claims the lease in that transaction: ``claim``).
    """

    conversation_id: str
    holder: str
    checked: T
    turn_count: int | None
    ttl: timedelta
    clock: Callable[[], datetime]
    revision: int | None = None
    taken: bool = True
    released: bool = False
    lost: bool = False

    def claim(self, session: Session) -> None:
        """Take the lease in the transaction that creates its conversation (``Leases.hold_new``)."""
        now = self.clock()
        acquired = repo.acquire_lease(
            session=session,
            conversation_id=self.conversation_id,
            holder=self.holder,
            now=now,
            expires_at=now + self.ttl,
        )
        assert acquired, "nobody else can hold a lease on a conversation this transaction creates"
        self.taken = True

    def release(self, session: Session) -> None:
        """Give the lease up in the caller's transaction: the one that stores the turn's last row,
        so the answer and the next turn's chance come together (and cost one transaction)."""
        repo.release_lease(session=session, conversation_id=self.conversation_id, holder=self.holder)
        self.released = True


class Leases:
    """Takes, renews and gives up conversations' leases for one replica (one engine)."""

    def __init__(
        self,
        engine: Engine,
        *,
        ttl_s: float = DEFAULTS.lease_ttl_s,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._engine = engine
        self._ttl = timedelta(seconds=ttl_s)
        self._clock = clock
        self._sleep = sleep
        self._replica = replica_id()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @asynccontextmanager
    async def hold(self, conversation_id: str, check: Callable[[Session], T]) -> AsyncIterator[Lease[T]]:
        """The conversation's lease for the block: waits for this process's turns, then for other
        replicas'. ``check`` (who may write) runs in each try's transaction before the lease is
        taken: a refusal does not wait for another replica's turn, and a link revoked meanwhile
        refuses."""
        async with self._lock(conversation_id):
            lease = await self._acquire(conversation_id, check)
            async with self._kept(lease):
                yield lease

    @asynccontextmanager
    async def hold_now(self, conversation_id: str, check: Callable[[Session], T]) -> AsyncIterator[Lease[T]]:
        """``hold`` for a short change that must not queue behind a turn (a quick edit): BusyError at
        once if a turn of this process or of another replica holds the conversation."""
        lock = self._lock(conversation_id)
        if lock.locked():
            raise BusyError()
        async with lock:
            lease = await self._acquire(conversation_id, check, wait=False)
            async with self._kept(lease):
                yield lease

    @asynccontextmanager
    async def hold_new(self, conversation_id: str, checked: T) -> AsyncIterator[Lease[T]]:
        """The lease of a conversation not stored yet: the write that creates it claims it
        (``Lease.claim``), so no other replica can start a turn of it in between. ``checked``
        stands for what a check would have said (its creator's grant)."""
        async with self._lock(conversation_id):
            lease = self._lease(conversation_id, checked, None)
            lease.taken = False
            async with self._kept(lease):
                yield lease

    def live(self, session: Session, conversation_id: str) -> bool:
        """Whether a turn of the conversation is in flight on any replica, in the caller's transaction."""
        live = repo.live_leases(session=session, conversation_ids=[conversation_id], now=self._clock())
        return conversation_id in live

    # --- taking, keeping and giving up ----------------------------------------------------

    def _lock(self, conversation_id: str) -> asyncio.Lock:
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[conversation_id] = lock
        return lock

    def _lease(self, conversation_id: str, checked: T, turn_count: int | None) -> Lease[T]:
        holder = f"{self._replica}:{uuid.uuid4().hex}"  # new for each turn, at most 89 characters
        return Lease(conversation_id, holder, checked, turn_count, self._ttl, self._clock)

    async def _acquire(
        self, conversation_id: str, check: Callable[[Session], T], *, wait: bool = True
    ) -> Lease[T]:
        pause = FIRST_PAUSE_S
        while True:
            trying = asyncio.ensure_future(asyncio.to_thread(self._try, conversation_id, check))
            try:
                lease = await asyncio.shield(trying)
            except asyncio.CancelledError:
                # The caller went away (a closed page) while a try ran in its thread: if that try
                # took the lease, give it up, or the conversation would wait a whole ttl for nobody.
                with suppress(Exception):
                    if (late := await trying) is not None:
                        await asyncio.to_thread(self._give_up, late)
                raise
            if lease is not None:
                return lease
            if not wait:
                raise BusyError()
            await self._sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE_S)

    def _try(self, conversation_id: str, check: Callable[[Session], T]) -> Lease[T] | None:
        """One try, in one transaction: the check, the lease, and the version under it."""
        with session_scope(self._engine) as session:
            checked = check(session)
            lease = self._lease(conversation_id, checked, None)
            now = self._clock()
            try:
                acquired = repo.acquire_lease(
                    session=session,
                    conversation_id=conversation_id,
                    holder=lease.holder,
                    now=now,
                    expires_at=now + self._ttl,
                )
            except ConversationNotFoundError:
                raise AccessError(GONE) from None  # deleted since the check
            if not acquired:
                return None
            lease.turn_count, lease.revision = repo.version(
                session=session, conversation_id=conversation_id
            ) or (None, None)
            return lease

    def once(self, conversation_id: str, check: Callable[[Session], T], work: Callable[[Session, T], R]) -> R:
        """``work`` done in one transaction as a turn would be, under the conversation's lease, or
        BusyError at once if a turn holds it (on any replica): a change that adds no turn (a pick)
        takes the lease and gives it up in the transaction that makes it. Blocking."""
        with session_scope(self._engine) as session:
            checked = check(session)
            holder = self._lease(conversation_id, checked, None).holder
            now = self._clock()
            try:
                acquired = repo.acquire_lease(
                    session=session,
                    conversation_id=conversation_id,
                    holder=holder,
                    now=now,
                    expires_at=now + self._ttl,
                )
            except ConversationNotFoundError:
                raise AccessError(GONE) from None
            if not acquired:
                raise BusyError()
            done = work(session, checked)
            repo.release_lease(session=session, conversation_id=conversation_id, holder=holder)
            return done

    @asynccontextmanager
    async def _kept(self, lease: Lease[T]) -> AsyncIterator[None]:
        """Renewed while the block runs, given up after it (unless the turn's last write did)."""
        renewing = asyncio.create_task(self._renew(lease))
        ended = False
        try:
            yield
            ended = True
        finally:
            renewing.cancel()
            # After an error the flags may name a write that was rolled back: give it up anyway.
            if not ended or (lease.taken and not lease.released):
                await asyncio.to_thread(self._give_up, lease)

    async def _renew(self, lease: Lease[T]) -> None:
        while True:
            await self._sleep(self._ttl.total_seconds() / 3)
            if lease.released:
                return
            if not lease.taken:
                continue  # a new conversation's first write has not claimed it yet
            try:
                kept = await asyncio.to_thread(self._extend, lease)
            except SQLAlchemyError as exc:  # the database may come back before the lease expires
                log.warning("renewing the lease on conversation %s failed: %s", lease.conversation_id, exc)
                continue
            if not kept and not lease.released:
                lease.lost = True
                log.warning(
                    "lost the lease on conversation %s (it expired and another replica took it); "
                    "this turn's answer is stored only if nothing was appended meanwhile",
                    lease.conversation_id,
                )
                return

    def _extend(self, lease: Lease[T]) -> bool:
        with session_scope(self._engine) as session:
            return repo.renew_lease(
                session=session,
                conversation_id=lease.conversation_id,
                holder=lease.holder,
                expires_at=self._clock() + self._ttl,
            )

    def _give_up(self, lease: Lease[T]) -> None:
        try:
            with session_scope(self._engine) as session:
                repo.release_lease(
                    session=session, conversation_id=lease.conversation_id, holder=lease.holder
                )
        except SQLAlchemyError as exc:
            log.warning(
                "giving up the lease on conversation %s failed (it expires by itself): %s",
                lease.conversation_id,
                exc,
            )
        lease.released = True
