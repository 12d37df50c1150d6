"""Abuse limits for a public demo: turns per visitor and overall, and a daily spend cap.

A turn counts against the visitor's address *and* their owner key (or share token), so
neither rotating keys from one address nor rotating addresses with one key resets a limit
(addresses: chat/limits/visitors.py); the overall per-minute limit counts the turns on the
server's keys, whose provider quota it protects. Rate limits count turns in sliding windows, as rows in the
database, so every replica on it counts the same turns (a bucket is kept under its sha256: fixed
width, and no address or key copied into one more table). The spend cap counts estimated dollars
on the *server's* keys per UTC day in the database; visitors who bring their own keys are not
counted against it. Every refusal is a LimitError with a sentence the visitor can act on.

Admission is one write transaction, and admissions take turns (``repo.serialize_admissions``):
each reads counts and adds to them, and two replicas admitting at once must never both pass when
only one fits. A turn on the server's keys *reserves* its worst case there, against the cap; the
answer's own transaction settles it (the reservation dropped, the real cost added), and a turn cut
off before its answer releases it. A reservation whose replica died stops counting after
``reservation_ttl_s``, the longest a turn can take.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from chat.config import DEFAULTS
from chat.errors import LimitError
from chat.sharing.access import Actor
from storage import repository as repo
from storage import session_scope

__all__ = ["Guard", "Limits", "Reservation", "counted_as"]

MINUTE = 60.0
DAY = 86_400.0
#: The bucket every turn on the server's keys counts in as well (no visitor is "": ``admit`` leaves out what is missing).
EVERYONE = ""


def counted_as(actor: Actor, work: str = "edit") -> list[str]:
    """The buckets one piece of ``work`` by ``actor`` counts in: their address and their key."""
    key = actor.owner_id or actor.share_token or ""
    return [f"{work} address:{actor.visitor}" if actor.visitor else "", f"{work} key:{key}" if key else ""]


@dataclass(frozen=True)
class Limits:
    per_visitor_per_minute: int = DEFAULTS.rate_per_minute
    per_visitor_per_day: int = DEFAULTS.rate_per_day
    global_per_minute: int = DEFAULTS.global_rate_per_minute
    daily_spend_usd: float = 0.0  # 0 = no cap
    reservation_ttl_s: float = DEFAULTS.longest_turn_s


@dataclass(frozen=True)
class Reservation:
    """A turn's worst case, counted against today's cap until the turn is settled or released."""

    id: int
    usd: float


class Guard:
    def __init__(
        self,
        limits: Limits,
        *,
        engine: Engine,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limits = limits
        self._engine = engine
        self._clock = clock

    def admit(
        self,
        visitors: Sequence[str],
        *,
        server_cost: float,
        server_keys: bool = True,
        what: str = "edits",
        turns: int = 1,
    ) -> Reservation | None:
        """Count ``turns`` turns (the variants of one answer are as many calls) for each of
        ``visitors`` (the client's address, their owner key…), or refuse them all if any of them
        would pass its limit: rotating keys from one address, or addresses with one key, gains
        nothing. ``server_cost`` is the worst case of all of them on our keys: reserved against the
        daily cap, if there is one (the reservation comes back). A refusal counts and reserves nothing.

        The global limit counts only turns that may call a provider on the server's keys
        (``server_keys``): it keeps them under the keys' own per-minute quota. A visitor's own keys
        are their quota; what this process can run at once is the queue's and the model
        concurrency's to bound (chat/server/capacity.py), with their own message."""
        now = self._clock()
        mine = [_bucket(visitor) for visitor in dict.fromkeys(v for v in visitors if v)]
        everyone = [_bucket(EVERYONE)] if server_keys else []
        with session_scope(self._engine) as session:
            repo.serialize_admissions(session=session)
            counts = repo.count_events(
                session=session, buckets=[*mine, *everyone], now=_at(now), since=_at(now - MINUTE)
            )
            for bucket in mine:
                self._check_visitor(counts.get(bucket), now, what, turns)
            if any(_live(counts.get(bucket)) + turns > self._limits.global_per_minute for bucket in everyone):
                raise LimitError("Retouch is very busy right now. Please try again in a minute.")
            reservation = self._reserve(session, server_cost, now)
            kept = {bucket: _at(now + DAY) for bucket in mine} | {
                bucket: _at(now + MINUTE) for bucket in everyone
            }
            repo.add_events(session=session, at=_at(now), forget_at=kept, times=turns)
        return reservation

    def _check_visitor(self, count: repo.BucketCount | None, now: float, what: str, turns: int) -> None:
        if count is None:
            count = repo.BucketCount(0, 0, None)
        ask = f" {turns} variants count as {turns} {what}." if turns > 1 else ""
        per_minute = self._limits.per_visitor_per_minute
        if count.since + turns > per_minute:
            wait = MINUTE - (now - count.oldest_since.timestamp()) if count.oldest_since else MINUTE
            most = "the most this demo allows" if count.since >= per_minute else f"of {per_minute} a minute"
            raise LimitError(
                f"You have made {count.since} {what} in the last minute, {most}.{ask} "
                f"Please wait {max(1, round(wait))} s."
            )
        if count.live + turns > self._limits.per_visitor_per_day:
            raise LimitError(
                f"You have reached today's limit of {self._limits.per_visitor_per_day} {what} on this demo.{ask} "
                "Run Retouch yourself (see the README) for unlimited use."
            )

    def _reserve(self, session: Session, usd: float, now: float) -> Reservation | None:
        cap = self._limits.daily_spend_usd
        if usd <= 0 or cap <= 0:
            return None
        if repo.spend_with_reservations(session=session, day=_day(now), now=_at(now)) + usd > cap:
            raise LimitError(
                f"This demo has used today's budget for its own API keys (${cap:.2f}). "
                "Paste your own Gemini or OpenAI key under \u201cYour API keys\u201d to continue, "
                "or come back tomorrow."
            )
        expires_at = _at(now + self._limits.reservation_ttl_s)
        return Reservation(repo.reserve_spend(session=session, usd=usd, expires_at=expires_at), usd)

    def settle(self, reservation: Reservation | None, usd: float, *, session: Session) -> None:
        """The turn is answered (or failed, at 0): its reservation gives way to what it really cost,
        in the answer's transaction, so the two are stored together."""
        if reservation is not None:
            repo.drop_reservation(session=session, reservation_id=reservation.id)
        self.charge(usd, session=session)

    def release(self, reservation: Reservation) -> None:
        """A turn cut off before its answer was stored: what it reserved stops counting."""
        with session_scope(self._engine) as session:
            repo.drop_reservation(session=session, reservation_id=reservation.id)

    def charge(self, usd: float, *, session: Session | None = None) -> None:
        """Add what an answered call cost on the server's keys; in ``session`` when given, so the
        answer and its cost are stored together (and one write transaction serves both)."""
        if usd <= 0:
            return
        if session is not None:
            repo.add_spend(session=session, day=_day(self._clock()), usd=usd)
            return
        with session_scope(self._engine) as own:
            repo.add_spend(session=own, day=_day(self._clock()), usd=usd)

    def spent_today(self) -> float:
        with session_scope(self._engine, read_only=True) as session:
            return repo.spent_on(session=session, day=_day(self._clock()))


def _bucket(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _live(count: repo.BucketCount | None) -> int:
    return count.live if count is not None else 0


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _day(seconds: float) -> str:
    return _at(seconds).date().isoformat()
