"""The OpenAI chat-completions wire format (sans-IO): request bodies, SSE decoding, stream assembly and
the retry policy.

Rules:
- :class:`SseDecoder` takes bytes in any split and yields each event's ``data`` text (multi-line data
  joined with ``\\n``; comments and other fields ignored; CR, LF and CRLF line ends);
- :class:`StreamAssembler` folds ``chat.completion.chunk`` objects into text deltas, tool calls (by
  ``index``, arguments concatenated), the finish reason and the usage block;
- :func:`retry_delay_s` is exponential backoff with full jitter (``random() * min(cap, base * 2**n)``),
  but never shorter than a server's ``Retry-After`` (capped at ``cap``); the random draw comes in;
- :func:`parse_retry_after` reads delta-seconds only (HTTP dates need a clock: treated as absent).
No I/O, no clocks: the shell (``openai.py``) feeds bytes and sleeps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "RETRYABLE_STATUS",
    "Completion",
    "SseDecoder",
    "StreamAssembler",
    "ToolCallRequest",
    "Usage",
    "build_request",
    "parse_retry_after",
    "retry_delay_s",
]

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@attrs.frozen
class Usage:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    total: int = 0

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any] | None) -> Usage:
        if not isinstance(raw, Mapping):
            return cls()
        prompt = _int(raw.get("prompt_tokens"))
        completion = _int(raw.get("completion_tokens"))
        details = raw.get("prompt_tokens_details")
        cached = _int(details.get("cached_tokens")) if isinstance(details, Mapping) else 0
        total = _int(raw.get("total_tokens")) or prompt + completion
        return cls(prompt, completion, cached, total)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input + other.input,
            self.output + other.output,
            self.cache_read + other.cache_read,
            self.total + other.total,
        )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


@attrs.frozen
class ToolCallRequest:
    id: str
    name: str
    arguments: str


@attrs.frozen
class Completion:
    """One finished model call."""

    text: str
    tool_calls: tuple[ToolCallRequest, ...] = ()
    finish_reason: str | None = None
    usage: Usage = Usage()
    model: str = ""
    attempts: int = 1


def build_request(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] = (),
    stream: bool = True,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages], "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if tools:
        body["tools"] = [dict(t) for t in tools]
    return body


class SseDecoder:
    """Server-sent events: bytes in, ``data`` payloads out."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        out: list[str] = []
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                return out
            end, skip = cut
            line = self._buffer[:end].decode("utf-8", "replace")
            self._buffer = self._buffer[end + skip :]
            if not line:
                if self._data:
                    out.append("\n".join(self._data))
                    self._data = []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            if field == "data":
                self._data.append(value[1:] if value.startswith(" ") else value)

    def close(self) -> list[str]:
        """Flush an event not followed by a blank line (a server that closed right after it)."""
        out = self.feed(b"\n\n") if self._buffer or self._data else []
        return out


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r")
    if cr == -1 and lf == -1:
        return None
    if cr != -1 and (lf == -1 or cr < lf):
        if cr == len(buffer) - 1:
            return None  # wait: a LF may follow
        return (cr, 2) if buffer[cr + 1 : cr + 2] == b"\n" else (cr, 1)
    return (lf, 1)


class StreamAssembler:
    """Folds streamed chunks into a :class:`Completion`; :meth:`feed` returns the new text."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: dict[int, dict[str, str]] = {}
        self.finish_reason: str | None = None
        self.usage = Usage()
        self.model = ""
        self.done = False

    def feed_data(self, data: str) -> str:
        """One SSE ``data`` payload. Raises ValueError for text that is not a JSON chunk."""
        if data.strip() == "[DONE]":
            self.done = True
            return ""
        chunk = json.loads(data)
        if not isinstance(chunk, dict):
            raise ValueError("chunk is not an object")  # noqa: TRY004 -- callers catch ValueError for any bad chunk
        return self.feed(chunk)

    def feed(self, chunk: Mapping[str, Any]) -> str:
        if isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        if chunk.get("usage"):
            self.usage = Usage.from_wire(chunk["usage"])
        new = ""
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, Mapping):
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._text.append(content)
                new += content
            for call in delta.get("tool_calls") or ():
                self._feed_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        return new

    def _feed_call(self, call: Mapping[str, Any]) -> None:
        index = call.get("index", len(self._calls))
        slot = self._calls.setdefault(int(index), {"id": "", "name": "", "arguments": ""})
        if call.get("id"):
            slot["id"] = str(call["id"])
        fn = call.get("function") or {}
        if fn.get("name"):
            slot["name"] += str(fn["name"])
        if fn.get("arguments"):
            slot["arguments"] += str(fn["arguments"])

    def result(self, *, attempts: int = 1) -> Completion:
        calls = tuple(
            ToolCallRequest(c["id"] or f"call_{i}", c["name"], c["arguments"])
            for i, c in sorted(self._calls.items())
        )
        return Completion("".join(self._text), calls, self.finish_reason, self.usage, self.model, attempts)


def parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 and seconds == seconds else None


def retry_delay_s(
    attempt: int, *, base_s: float, cap_s: float, random: float, retry_after_s: float | None = None
) -> float:
    """Delay before retry number ``attempt`` (0-based). ``random`` is a draw from [0, 1)."""
    ceiling = min(cap_s, base_s * float(2 ** max(0, attempt)))
    delay: float = random * ceiling
    if retry_after_s is not None:
        delay = max(delay, min(cap_s, retry_after_s))
    return delay
