"""Signed webhooks, sans-IO: HMAC-SHA256 over timestamp, nonce and body, plus replay protection.

Wire format (both directions, so a receiver of our callbacks verifies them the same way):

- ``X-Appliance-Timestamp``: Unix seconds (integer);
- ``X-Appliance-Nonce``: 16-128 characters of ``[A-Za-z0-9_-]``, unique per request;
- ``X-Appliance-Signature``: ``sha256=`` + hex HMAC-SHA256(secret, ``v1:<timestamp>:<nonce>:`` + body).

Verification order (cheap and unauthenticated things first, state last):
1. headers present and well-formed, else ``MALFORMED``;
2. constant-time signature compare, else ``BAD_SIGNATURE`` (so unsigned junk never touches the cache);
3. ``|now - timestamp| <= window``, and above the cache's floor, else ``STALE``;
4. nonce unseen within the window, else ``REPLAYED``; then it is remembered.

The nonce cache is bounded. When it is full the oldest entry is evicted and the *floor* rises to that
entry's timestamp: anything at or below the floor is refused as stale, so eviction can never reopen a
replay (under a flood, valid-but-old requests are refused instead; never accepted twice).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Mapping

import attrs

__all__ = [
    "NONCE_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ReplayGuard",
    "Verdict",
    "sign",
    "signed_headers",
    "verify",
]

TIMESTAMP_HEADER = "x-appliance-timestamp"
NONCE_HEADER = "x-appliance-nonce"
SIGNATURE_HEADER = "x-appliance-signature"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


class Verdict(enum.StrEnum):
    OK = "ok"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale"
    REPLAYED = "replayed"


def sign(secret: bytes, timestamp: int, nonce: str, body: bytes) -> str:
    mac = hmac.new(secret, f"v1:{timestamp}:{nonce}:".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: bytes, timestamp: int, nonce: str, body: bytes) -> dict[str, str]:
    """Headers for an outbound signed request (the caller picks the nonce and the time)."""
    return {
        TIMESTAMP_HEADER: str(timestamp),
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign(secret, timestamp, nonce, body),
    }


@attrs.define
class ReplayGuard:
    window_s: int = 300
    capacity: int = 4096
    floor: int = -(2**62)
    _seen: OrderedDict[str, int] = attrs.field(factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, nonce: str, timestamp: int, now_s: int) -> Verdict:
        """Decide on (nonce, timestamp) and remember an accepted nonce."""
        self._expire(now_s)
        if abs(now_s - timestamp) > self.window_s or timestamp <= self.floor:
            return Verdict.STALE
        if nonce in self._seen:
            return Verdict.REPLAYED
        while len(self._seen) >= self.capacity:
            _, evicted_ts = self._seen.popitem(last=False)
            self.floor = max(self.floor, evicted_ts)
        if timestamp <= self.floor:
            return Verdict.STALE
        self._seen[nonce] = timestamp
        return Verdict.OK

    def _expire(self, now_s: int) -> None:
        """Drop expired entries from the front (amortised O(1)); an out-of-order straggler stays until it
        reaches the front, which is harmless: its timestamp already fails the window check."""
        horizon = now_s - self.window_s
        while self._seen:
            nonce, ts = next(iter(self._seen.items()))
            if ts >= horizon:
                break
            del self._seen[nonce]


def verify(
    secret: bytes, headers: Mapping[str, str], body: bytes, *, now_s: int, guard: ReplayGuard
) -> Verdict:
    """Check one inbound request; ``headers`` keys are lower-case."""
    ts_raw, nonce, sig = (headers.get(h, "") for h in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER))
    if (
        not ts_raw.isdigit()
        or len(ts_raw) > 12
        or not _NONCE.fullmatch(nonce)
        or not sig.startswith("sha256=")
    ):
        return Verdict.MALFORMED
    timestamp = int(ts_raw)
    if not secret or not hmac.compare_digest(sign(secret, timestamp, nonce, body), sig):
        return Verdict.BAD_SIGNATURE
    return guard.check(nonce, timestamp, now_s)
