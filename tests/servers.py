"""What every server the tests start shares: it dies with the test process that started it."""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Callable

__all__ = ["dies_with_parent"]

_PR_SET_PDEATHSIG = 1


def dies_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A ``preexec_fn``: in the child, before exec, ask the kernel to send ``sig`` when the
    test process dies, so a crashed or killed run leaves no server behind."""

    def arm() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)

    return arm
