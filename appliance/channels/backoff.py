"""Reconnect/restart delays: capped exponential backoff with jitter (sans-IO; randomness is injected).

Rules: attempt 0 waits ``base_s`` scaled by jitter; each failure doubles up to ``cap_s``; a success
(:meth:`Backoff.reset`) starts again from the base. Jitter spreads reconnect storms (NanoClaw's Baileys
"reconnect storm" issues): the delay is drawn from ``[d * (1 - jitter), d]``.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

__all__ = ["Backoff", "backoff_delay"]


def backoff_delay(attempt: int, *, base_s: float, cap_s: float, jitter: float, rand: float) -> float:
    """Delay before retry number ``attempt`` (0-based); ``rand`` in [0, 1) comes from the caller."""
    ceiling = min(cap_s, base_s * float(2 ** min(attempt, 62)))
    return float(ceiling * (1.0 - jitter * rand))


@attrs.define
class Backoff:
    """Stateful helper around :func:`backoff_delay`: ``next_delay()`` after a failure, ``reset()`` after a
    success."""

    base_s: float = 1.0
    cap_s: float = 60.0
    jitter: float = 0.5
    rand: Callable[[], float] = attrs.field(default=lambda: 0.0)
    attempt: int = 0

    def next_delay(self) -> float:
        delay = backoff_delay(
            self.attempt, base_s=self.base_s, cap_s=self.cap_s, jitter=self.jitter, rand=self.rand()
        )
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
