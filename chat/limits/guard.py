"""Abuse limits for a public demo: turns per visitor and overall, and a daily spend cap.

A turn counts against the visitor's address *and* their owner key (or share token), so
neither rotating keys from one address nor rotating addresses with one key resets a limit
(addresses: chat/limits/visitors.py). Rate limits count turns in sliding windows, in memory (a
restart forgives everyone, which is fine for minutes). The spend cap counts estimated dollars on the *server's* keys per
UTC day in the database, so it survives restarts; visitors who bring their own keys are
not counted against it. Every refusal is a LimitError with a sentence the visitor can act on.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
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

__all__ = ["Guard", "Limits", "counted_as"]

MINUTE = 60.0
DAY = 86_400.0


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
        self._visitors: dict[str, deque[float]] = defaultdict(deque)
        self._everyone: deque[float] = deque()

    def admit(self, visitors: Sequence[str], *, server_cost: float, what: str = "edits") -> None:
        """Count one turn for each of ``visitors`` (the client's address, their owner key…), or refuse
        it if any of them is at its limit: rotating keys from one address, or addresses with one key,
        gains nothing. ``server_cost`` is the turn's worst case on our keys."""
        now = self._clock()
        buckets = [self._visitors[visitor] for visitor in dict.fromkeys(v for v in visitors if v)]
        _forget(self._everyone, now - MINUTE)
        for mine in buckets:
            self._check_visitor(mine, now, what)
        if len(self._everyone) >= self._limits.global_per_minute:
            raise LimitError("Retouch is very busy right now. Please try again in a minute.")
        if server_cost > 0 and self._limits.daily_spend_usd > 0:
            spent = self.spent_today()
            if spent + server_cost > self._limits.daily_spend_usd:
                raise LimitError(
                    f"This demo has used today's budget for its own API keys (${self._limits.daily_spend_usd:.2f}). "
                    "Paste your own Gemini or OpenAI key under \u201cYour API keys\u201d to continue, "
                    "or come back tomorrow."
                )
        for mine in buckets:
            mine.append(now)
        self._everyone.append(now)

    def _check_visitor(self, mine: deque[float], now: float, what: str) -> None:
        _forget(mine, now - DAY)
        recent = [t for t in mine if t > now - MINUTE]
        if len(recent) >= self._limits.per_visitor_per_minute:
            wait = MINUTE - (now - recent[0])
            raise LimitError(
                f"You have made {len(recent)} {what} in the last minute, the most this demo allows. "
                f"Please wait {max(1, round(wait))} s."
            )
        if len(mine) >= self._limits.per_visitor_per_day:
            raise LimitError(
                f"You have reached today's limit of {self._limits.per_visitor_per_day} {what} on this demo. "
                "Run Retouch yourself (see the README) for unlimited use."
            )

    def charge(self, usd: float, *, session: Session | None = None) -> None:
        """Add what an answered call cost on the server's keys; in ``session`` when given, so the
        answer and its cost are stored together (and one write transaction serves both)."""
        if usd <= 0:
            return
        if session is not None:
            repo.add_spend(session=session, day=self._today(), usd=usd)
            return
        with session_scope(self._engine) as own:
            repo.add_spend(session=own, day=self._today(), usd=usd)

    def spent_today(self) -> float:
        with session_scope(self._engine, read_only=True) as session:
            return repo.spent_on(session=session, day=self._today())

    def _today(self) -> str:
        return datetime.fromtimestamp(self._clock(), UTC).date().isoformat()


def _forget(times: deque[float], before: float) -> None:
    while times and times[0] <= before:
        times.popleft()
