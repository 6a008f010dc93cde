"""Structured logging: one JSON object per line on stderr, human-readable on a TTY.

Rules:
- Event names are snake_case past-tense facts (``frame_rejected``); fields are typed values.
- Context (``req_id``, ``conn_id``, ``session_id``, ``method``) is bound with :func:`bound_context`
  in the task that handles a request; children inherit it through contextvars.
- Every line passes through :func:`redact` first: keys that look like credentials never reach a log.

We write our own ~100 lines instead of structlog: the chain is fixed and small, and the appliance's cold
start budget (<= 0.6 s to first health answer) has no room for the stdlib logging machinery.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import os
import re
import sys
import types
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

__all__ = ["Logger", "bound_context", "configure", "fresh_context", "get_logger", "redact"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|authorization|api[_-]?key|cookie|private[_-]?key)", re.I
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{6,}")
REDACTED = "[redacted]"

_EMPTY: Mapping[str, Any] = types.MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("log_context", default=_EMPTY)


def redact(value: Any) -> Any:
    """Return ``value`` with every credential-like key's value replaced, recursively.

    Pure: the input is not modified. Keys match token/secret/password/authorization/api key/cookie;
    ``Bearer xyz`` inside strings is masked too. Counters such as ``totalTokens`` are kept: a key is a
    secret only when it names the credential itself, not a count of model tokens.
    """
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            skey = str(key)
            if _SECRET_KEY.search(skey) and not _is_token_counter(skey):
                out[skey] = REDACTED if item not in (None, "") else item
            else:
                out[skey] = redact(item)
        return out
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return _BEARER.sub(r"\1 " + REDACTED, value)
    return value


def _is_token_counter(key: str) -> bool:
    lowered = key.lower()
    return lowered.endswith(("tokens", "tokencount", "tokens_total")) or lowered in {
        "token_count",
        "maxtokens",
    }


@contextlib.contextmanager
def bound_context(**fields: Any) -> Iterator[None]:
    """Bind fields to every log line written in this context (and tasks spawned from it)."""
    reset = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(reset)


@contextlib.contextmanager
def fresh_context() -> Iterator[None]:
    """Drop inherited fields: for long-lived tasks started from inside a request (they outlive it)."""
    reset = _context.set(_EMPTY)
    try:
        yield
    finally:
        _context.reset(reset)


class _Sink:
    def __init__(self) -> None:
        self.stream: TextIO = sys.stderr
        self.level = _LEVELS["info"]
        self.human = False


_sink = _Sink()


def configure(*, level: str = "info", stream: TextIO | None = None, human: bool | None = None) -> None:
    """Set the level and output; ``human`` defaults to whether the stream is a TTY."""
    _sink.stream = stream if stream is not None else sys.stderr
    _sink.level = _LEVELS.get(level.lower(), _LEVELS["info"])
    if human is None:
        human = _sink.stream.isatty() and os.environ.get("APPLIANCE_LOG_FORMAT", "") != "json"
    _sink.human = human


class Logger:
    """A named logger; ``log.info("run_started", duration_ms=3)`` writes one line."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _emit(self, level: str, event: str, fields: Mapping[str, Any]) -> None:
        if _LEVELS[level] < _sink.level:
            return
        record: dict[str, Any] = {
            "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": level,
            "event": event,
            "logger": self.name,
        }
        record.update(_context.get())
        record.update(fields)
        record = redact(record)
        line = (
            _format_human(record) if _sink.human else json.dumps(record, default=str, separators=(",", ":"))
        )
        try:
            _sink.stream.write(line + "\n")
            _sink.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must never take the appliance down

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def exception(self, event: str, exc: BaseException, **fields: Any) -> None:
        """Log a bug with its traceback (to the log only, never to a peer)."""
        import traceback

        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self._emit("error", event, {**fields, "exc_type": type(exc).__name__, "traceback": tb})


def _format_human(record: Mapping[str, Any]) -> str:
    head = f"{record['ts'][11:23]} {record['level'].upper():7} {record['event']}"
    rest = " ".join(f"{k}={v}" for k, v in record.items() if k not in {"ts", "level", "event", "logger"})
    return f"{head} {rest}".rstrip()


def get_logger(name: str) -> Logger:
    return Logger(name)
