"""OpenAI-compatible chat completions over httpx (a cloud API, llama.cpp or Ollama on the board).

The shell around :mod:`appliance.agent.providers.wire`: it sends the request, feeds the SSE bytes to the
decoder and the assembler, forwards text deltas, and retries.

Retry rules:
- 429, 408/409/425 and 5xx answers, connect/read errors, timeouts and streams that break **before any text
  was forwarded** are retried up to ``max_attempts`` per model, after
  :func:`~appliance.agent.providers.wire.retry_delay_s` (full jitter, ``Retry-After`` honoured);
- a stream that breaks after text was forwarded is not retried (the user already saw part of the reply):
  :class:`ProviderUnavailable`;
- other 4xx answers are not retried on that model; the next model of the fallback list is tried; when the
  list is exhausted the last error is raised (401/403 at once: no other model will take a bad key);
- each attempt has its own deadline of ``request_timeout_s`` (connect to last byte).
httpx is imported on the first request, never at gateway start.

Error tree: ProviderUnavailable (retryable) <- :class:`ProviderRejected` (not retryable: bad key, bad
request).
"""

from __future__ import annotations

import json
import random as _random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from appliance.agent.providers.wire import (
    RETRYABLE_STATUS,
    Completion,
    SseDecoder,
    StreamAssembler,
    build_request,
    parse_retry_after,
    retry_delay_s,
)
from appliance.errors import ProviderUnavailable
from appliance.log import get_logger

if TYPE_CHECKING:
    import httpx

__all__ = ["OpenAIProvider", "ProviderRejected", "TextSink"]

log = get_logger("appliance.agent.provider")

TextSink = Callable[[str], Awaitable[None]]


class ProviderRejected(ProviderUnavailable):
    """The provider refused the request for a reason a retry will not fix."""

    retryable: ClassVar[bool] = False


class _Retryable(Exception):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OpenAIProvider:
    """One configured endpoint with a model fallback list. Call :meth:`aclose` when done."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str = "",
        models: Sequence[str] = (),
        request_timeout_s: float = 60.0,
        max_attempts: int = 4,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        random: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.models = tuple(m for m in models if m) or ("default",)
        self.request_timeout_s = request_timeout_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._random = random or _random.SystemRandom().random
        self._sleep = sleep
        self._headers = {"Accept": "text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        """The connection pool, created on the first request (httpx costs tens of ms to import)."""
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                headers=self._headers, timeout=httpx.Timeout(self.request_timeout_s)
            )
        return self._client

    @property
    def model(self) -> str:
        return self.models[0]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] = (),
        on_text: TextSink | None = None,
    ) -> Completion:
        """Stream one completion, trying each model in turn. Raises ProviderUnavailable/ProviderRejected."""
        last: ProviderUnavailable | None = None
        attempts = 0
        for model in self.models:
            try:
                completion = await self._complete_model(model, messages, tools, on_text, attempts)
            except ProviderRejected as exc:
                if (exc.details or {}).get("status") in (401, 403):
                    raise
                last = exc
            except ProviderUnavailable as exc:
                if (exc.details or {}).get("partial"):
                    raise
                last = exc
            else:
                return completion
            attempts = int((last.details or {}).get("attempts", attempts))
            log.warning("model_fallback", model=model, error=last.message)
        assert last is not None
        raise last

    async def _complete_model(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        on_text: TextSink | None,
        attempts_before: int,
    ) -> Completion:
        body = build_request(model, messages, tools=tools, stream=True)
        attempts = attempts_before
        for attempt in range(self.max_attempts):
            attempts += 1
            try:
                completion = await self._attempt(body, on_text)
            except _Retryable as exc:
                if attempt + 1 >= self.max_attempts:
                    raise ProviderUnavailable(
                        f"model {model} unavailable: {exc}",
                        details={"model": model, "attempts": attempts},
                    ) from None
                delay = retry_delay_s(
                    attempt,
                    base_s=self.backoff_base_s,
                    cap_s=self.backoff_cap_s,
                    random=self._random(),
                    retry_after_s=exc.retry_after_s,
                )
                log.info(
                    "model_retry", model=model, attempt=attempts, delay_ms=int(delay * 1000), error=str(exc)
                )
                await self._sleep(delay)
            except ProviderUnavailable as exc:
                exc.details = {**(exc.details or {}), "model": model, "attempts": attempts}
                raise
            else:
                return Completion(
                    completion.text,
                    completion.tool_calls,
                    completion.finish_reason,
                    completion.usage,
                    completion.model or model,
                    attempts,
                )
        raise AssertionError("unreachable")

    async def _attempt(self, body: dict[str, Any], on_text: TextSink | None) -> Completion:
        import httpx

        decoder = SseDecoder()
        assembler = StreamAssembler()
        forwarded = False
        url = f"{self.base_url}/chat/completions"
        try:
            with trio.fail_after(self.request_timeout_s):
                async with self._http().stream("POST", url, json=body) as response:
                    if response.status_code != 200:
                        await self._fail_status(response)
                    content_type = response.headers.get("content-type", "")
                    if "text/event-stream" not in content_type:
                        raw = await response.aread()
                        payload = json.loads(raw)
                        assembler.feed(payload)
                        if isinstance(payload, dict) and payload.get("usage"):
                            assembler.feed({"usage": payload["usage"]})
                        text = assembler.result().text
                        if text and on_text is not None:
                            await on_text(text)
                        return assembler.result()
                    async for chunk in response.aiter_bytes():
                        for data in decoder.feed(chunk):
                            new = assembler.feed_data(data)
                            if new and on_text is not None:
                                forwarded = True
                                await on_text(new)
                    for data in decoder.close():
                        assembler.feed_data(data)
        except trio.TooSlowError:
            if forwarded:
                raise ProviderUnavailable(
                    "model stream timed out mid-reply", details={"partial": True}
                ) from None
            raise _Retryable("request timed out") from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            if forwarded:
                raise ProviderUnavailable(
                    f"model stream broke mid-reply: {type(exc).__name__}", details={"partial": True}
                ) from None
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # JSON that is not a chunk: the server is broken
            raise ProviderRejected(f"model sent a malformed reply: {exc}") from None
        if not assembler.done and assembler.finish_reason is None:
            if forwarded:
                raise ProviderUnavailable("model stream ended early", details={"partial": True})
            raise _Retryable("stream ended before [DONE]")
        return assembler.result()

    async def _fail_status(self, response: httpx.Response) -> None:
        status = response.status_code
        raw = await response.aread()
        message = _error_message(raw) or f"HTTP {status}"
        if status in RETRYABLE_STATUS:
            raise _Retryable(
                f"HTTP {status}: {message}", parse_retry_after(response.headers.get("retry-after"))
            )
        raise ProviderRejected(
            f"model request refused (HTTP {status}): {message}", details={"status": status}
        )


def _error_message(raw: bytes) -> str:
    try:
        doc = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace").strip()
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        return str(doc["error"].get("message", ""))[:200]
    return ""
