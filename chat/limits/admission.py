"""Whether a turn may run, decided before anything is stored or sent.

In order: the conversation's own budget (what it has cost plus the most the next turn could
cost), then the visitor's rate limits and the server's daily spend cap (chat/limits/guard.py), where
a turn counts at its worst case unless the visitor's own keys cover every provider it may call.
That worst case is reserved against the cap; the answer's transaction settles it
(chat/conversation/turns.py), and a turn cut off before its answer is stored releases it here.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr

from chat.conversation.fallback import ROUTES, FallbackPolicy
from chat.domain import GenerationOptions, Turn
from chat.errors import InputError
from chat.limits.guard import Guard, Reservation, counted_as
from chat.sharing.access import Actor

__all__ = ["Admission", "server_cost"]


class Admission:
    def __init__(self, policy: FallbackPolicy, guard: Guard | None = None) -> None:
        self._policy = policy
        self._guard = guard

    def admit(
        self,
        actor: Actor,
        options: GenerationOptions,
        keys: Mapping[str, SecretStr],
        *,
        input_images: int,
        spent: float,
    ) -> Reservation | None:
        """InputError over the budget, LimitError over a rate limit or the cap; blocking (the guard's rows).
        What the turn reserved against the daily cap comes back, for its answer to settle.

        A turn with variants is that many calls: it costs up to that many times the worst case,
        and counts as that many turns against the rate limits."""
        worst = self.worst_case(options, input_images=input_images)
        if options.budget_usd is not None and spent + worst > options.budget_usd:
            edit = f"the next edit ({options.variants} variants)" if options.variants > 1 else "the next edit"
            raise InputError(
                f"This conversation has cost \u2248 ${spent:.2f} of its ${options.budget_usd:.2f} budget, "
                f"and {edit} could cost up to ${worst:.2f}. Raise the budget under Options to go on."
            )
        if self._guard is None:
            return None
        covered = all(name in keys for name in ROUTES[options.route])
        return self._guard.admit(
            counted_as(actor),
            server_cost=0.0 if covered else worst,
            server_keys=not covered,
            turns=options.variants,
        )

    def worst_case(self, options: GenerationOptions, *, input_images: int) -> float:
        """The most the turn could cost: every call its route may make, once per variant."""
        return self._policy.worst_case_cost(options, input_images=input_images) * options.variants

    def release(self, reservation: Reservation) -> None:
        """The turn ended without an answer stored (cut off, or refused after admission): blocking."""
        if self._guard is not None:
            self._guard.release(reservation)


def server_cost(turn: Turn) -> float:
    """The estimated cost of the answering call, if it went on the server's key (the daily cap counts it)."""
    paid_by_server = any(a.outcome == "ok" and a.paid_by == "server" for a in turn.attempts)
    return turn.cost_usd if paid_by_server else 0.0
