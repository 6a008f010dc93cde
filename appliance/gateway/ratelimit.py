"""A token bucket for per-connection request rate limiting (sans-IO).

Rules: the bucket starts full (``burst`` tokens) and refills at ``rate`` tokens per second; time comes in
as a monotonic ``now`` in seconds; a clock that goes backwards refills nothing.
"""

from __future__ import annotations

import math

import attrs

__all__ = ["TokenBucket"]


@attrs.define
class TokenBucket:
    rate: float = attrs.field(validator=attrs.validators.gt(0))
    burst: float = attrs.field(validator=attrs.validators.ge(1))
    tokens: float = attrs.field(default=math.nan)
    updated: float | None = None

    def __attrs_post_init__(self) -> None:
        if math.isnan(self.tokens):
            self.tokens = float(self.burst)

    def take(self, now: float, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens if there are enough and return 0.0; else spend nothing and return how many
        seconds until there will be enough."""
        if self.updated is not None and now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate
