"""Optional VirusTotal v3 look-ups of file hashes and URLs (off by default; the operator brings a key).

Rules:
- Only hashes and URL ids are sent, never file contents.
- Short timeouts (connect 1 s, total 3 s by default). Offline, timeouts, 5xx and quota errors give
  ``unavailable``; a 404 gives ``unknown``. Neither ever blocks on its own: the caller's policy decides.
- A token bucket keeps to the public API's 4 requests/minute and a daily cap (500); when empty we answer
  ``unavailable`` at once instead of waiting. A 429 opens a cool-down.
- Answers are cached with a TTL (24 h for verdicts, 1 h for not-found). Time comes from an injected clock.
- httpx is imported lazily, on first use.
"""

from __future__ import annotations

import base64
import enum
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import httpx

__all__ = ["VirusTotalClient", "VtOutcome", "VtResult", "classify_stats", "url_id"]

DEFAULT_BASE_URL = "https://www.virustotal.com/api/v3"


class VtOutcome(enum.StrEnum):
    MALICIOUS = "malicious"
    SUSPICIOUS = "suspicious"
    CLEAN = "clean"
    UNKNOWN = "unknown"
    UNAVAILABLE = "unavailable"


@attrs.frozen
class VtResult:
    outcome: VtOutcome
    reason: str = ""
    stats: dict[str, int] = attrs.field(factory=dict)
    cached: bool = False


def url_id(url: str) -> str:
    """VirusTotal's URL identifier: unpadded URL-safe base64 of the URL."""
    return base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")


def classify_stats(
    stats: dict[str, int], *, block_at: int = 3, review_at: int = 1, suspicious_at: int = 2
) -> VtOutcome:
    """``malicious >= 3`` malicious; 1-2 malicious or ``suspicious >= 2`` suspicious; otherwise clean."""
    malicious = int(stats.get("malicious", 0))
    suspicious = int(stats.get("suspicious", 0))
    if malicious >= block_at:
        return VtOutcome.MALICIOUS
    if malicious >= review_at or suspicious >= suspicious_at:
        return VtOutcome.SUSPICIOUS
    return VtOutcome.CLEAN


@attrs.define
class _Bucket:
    capacity: float
    per_second: float
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class VirusTotalClient:
    """Async look-ups with cache, rate limit and graceful degradation. Use as ``async with``."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        connect_timeout_s: float = 1.0,
        timeout_s: float = 3.0,
        per_minute: int = 4,
        per_day: int = 500,
        verdict_ttl_s: float = 86400.0,
        not_found_ttl_s: float = 3600.0,
        cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self._clock = clock
        now = clock()
        self._minute = _Bucket(float(per_minute), per_minute / 60.0, float(per_minute), now)
        self._day = _Bucket(float(per_day), per_day / 86400.0, float(per_day), now)
        self.verdict_ttl_s = verdict_ttl_s
        self.not_found_ttl_s = not_found_ttl_s
        self.cooldown_s = cooldown_s
        self._cooldown_until = 0.0
        self._cache: dict[str, tuple[float, VtResult]] = {}
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> VirusTotalClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            timeout = httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s)
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers={"x-apikey": self._api_key, "accept": "application/json"},
                timeout=timeout,
                transport=self._transport,
            )
        return self._client

    async def lookup_file(self, sha256: str) -> VtResult:
        """Look up a file by its SHA-256 (or SHA-1/MD5)."""
        return await self._lookup(f"/files/{sha256.lower()}")

    async def lookup_url(self, url: str) -> VtResult:
        return await self._lookup(f"/urls/{url_id(url)}")

    async def _lookup(self, path: str) -> VtResult:
        import httpx

        now = self._clock()
        hit = self._cache.get(path)
        if hit is not None and hit[0] > now:
            return attrs.evolve(hit[1], cached=True)
        if now < self._cooldown_until:
            return VtResult(VtOutcome.UNAVAILABLE, "quota cool-down")
        if not self._minute.take(now) or not self._day.take(now):
            return VtResult(VtOutcome.UNAVAILABLE, "local rate limit")
        try:
            response = await self._http().get(path)
        except httpx.TimeoutException:
            return VtResult(VtOutcome.UNAVAILABLE, "timeout")
        except httpx.HTTPError as exc:
            return VtResult(VtOutcome.UNAVAILABLE, f"offline: {type(exc).__name__}")
        return self._interpret(path, response)

    def _interpret(self, path: str, response: httpx.Response) -> VtResult:
        now = self._clock()
        status = response.status_code
        if status == 404:
            result = VtResult(VtOutcome.UNKNOWN, "not found")
            self._cache[path] = (now + self.not_found_ttl_s, result)
            return result
        if status == 429:
            self._cooldown_until = now + self.cooldown_s
            return VtResult(VtOutcome.UNAVAILABLE, "quota exceeded")
        if status != 200:
            return VtResult(VtOutcome.UNAVAILABLE, f"http {status}: {_error_code(response)}")
        try:
            body = response.json()
            stats = {str(k): int(v) for k, v in body["data"]["attributes"]["last_analysis_stats"].items()}
        except (ValueError, KeyError, TypeError):
            return VtResult(VtOutcome.UNAVAILABLE, "malformed answer")
        result = VtResult(classify_stats(stats), "analysed", stats)
        self._cache[path] = (now + self.verdict_ttl_s, result)
        return result


def _error_code(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
        return str(body["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "error"
