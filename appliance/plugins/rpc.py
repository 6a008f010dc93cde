"""JSON-RPC 2.0 for plugin sidecars, sans-IO: framing, messages, and the versioned handshake.

Framing: one JSON object per line (``\\n``-terminated UTF-8) on the plugin's stdin/stdout, which any
language can speak without a library. stderr is free text (kept as a bounded tail for diagnostics).

Handshake (host first, before anything else):

- request ``initialize`` with ``{"protocolVersion": 1, "host": {"name", "version"},
  "grantedCapabilities": [...]}``;
- the plugin answers ``{"protocolVersion": <int>, "name": str, "version": str, "capabilities": [str]}``;
- the host refuses the plugin (and stops it) when the version is not one it supports
  (:class:`PluginProtocolError`) or when it declares a capability it was not granted
  (:class:`PluginRefused`, FORBIDDEN): a plugin never gets more than the operator allowed;
- afterwards the host calls only methods in the declared capability list (a capability *is* a method
  name); anything else is refused locally with :class:`PluginCapabilityDenied` and never sent.

At close the host sends ``shutdown`` (best effort) and closes stdin; a plugin exits on EOF.

Rules for the line buffer: a line longer than ``max_line_bytes`` raises :class:`PluginOutputTooLarge`
(the host kills the plugin); nothing is buffered beyond that bound.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import attrs

from appliance.errors import Forbidden, Unavailable

__all__ = [
    "SUPPORTED_VERSIONS",
    "LineBuffer",
    "PluginCallFailed",
    "PluginCapabilityDenied",
    "PluginCrashed",
    "PluginManifest",
    "PluginOutputTooLarge",
    "PluginProtocolError",
    "PluginRefused",
    "PluginTimeout",
    "RpcNotification",
    "RpcResponse",
    "check_handshake",
    "encode_notification",
    "encode_request",
    "parse_message",
]

SUPPORTED_VERSIONS = frozenset({1})
_CAPABILITY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


class PluginRefused(Forbidden):
    """The plugin asked for capabilities it was not granted."""


class PluginCapabilityDenied(Forbidden):
    """The host was asked to call a method outside the plugin's declared and granted capabilities."""


class PluginProtocolError(Unavailable):
    """The plugin broke the protocol (bad JSON-RPC, unsupported version, malformed handshake)."""

    retryable = False


class PluginOutputTooLarge(PluginProtocolError):
    """A line from the plugin exceeded the bound; the plugin is killed."""


class PluginTimeout(Unavailable):
    """A call did not answer within its timeout."""


class PluginCrashed(Unavailable):
    """The plugin process exited (or was killed) with calls outstanding."""


class PluginCallFailed(Unavailable):
    """The plugin answered a JSON-RPC error; ``details`` carries its code, message and data."""

    retryable = False


@attrs.frozen
class PluginManifest:
    name: str
    version: str
    protocol_version: int
    capabilities: frozenset[str]


@attrs.frozen
class RpcResponse:
    id: int
    result: Any = None
    error: dict[str, Any] | None = None


@attrs.frozen
class RpcNotification:
    method: str
    params: Any = None


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def encode_request(request_id: int, method: str, params: Any = None) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        msg["params"] = params
    return _line(msg)


def encode_notification(method: str, params: Any = None) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return _line(msg)


def parse_message(line: bytes) -> RpcResponse | RpcNotification:
    """Parse one line from the plugin. Raises PluginProtocolError for anything not JSON-RPC 2.0."""
    try:
        msg = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PluginProtocolError("plugin wrote a line that is not JSON") from exc
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
        raise PluginProtocolError("plugin wrote a message that is not JSON-RPC 2.0")
    if "method" in msg and "id" not in msg:
        if not isinstance(msg["method"], str):
            raise PluginProtocolError("notification method must be a string")
        return RpcNotification(msg["method"], msg.get("params"))
    rid = msg.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool):
        raise PluginProtocolError("response id must be an integer (the host only sends integer ids)")
    if "error" in msg:
        err = msg["error"]
        if not isinstance(err, dict) or not isinstance(err.get("code"), int):
            raise PluginProtocolError("malformed error object")
        return RpcResponse(rid, error=err)
    if "result" not in msg:
        raise PluginProtocolError("response has neither result nor error")
    return RpcResponse(rid, result=msg["result"])


def check_handshake(
    result: Any, *, granted: Iterable[str], supported: frozenset[int] = SUPPORTED_VERSIONS
) -> PluginManifest:
    """Validate an ``initialize`` result against what the operator granted.

    Raises PluginProtocolError (malformed / unsupported version) or PluginRefused (ungranted capability)."""
    if not isinstance(result, dict):
        raise PluginProtocolError("initialize result must be an object")
    version = result.get("protocolVersion")
    if not isinstance(version, int) or version not in supported:
        raise PluginProtocolError(
            f"unsupported plugin protocol version {version!r}",
            details={"supported": sorted(supported), "offered": version},
        )
    caps = result.get("capabilities")
    if not isinstance(caps, list) or not all(isinstance(c, str) and _CAPABILITY.fullmatch(c) for c in caps):
        raise PluginProtocolError("capabilities must be a list of dotted lower-case names")
    name, ver = result.get("name"), result.get("version")
    if not isinstance(name, str) or not name or not isinstance(ver, str):
        raise PluginProtocolError("initialize result needs string name and version")
    extra = sorted(set(caps) - set(granted))
    if extra:
        raise PluginRefused(
            f"plugin {name} declares capabilities it was not granted: {', '.join(extra)}",
            details={"plugin": name, "notGranted": extra},
        )
    return PluginManifest(name, ver, version, frozenset(caps))


class LineBuffer:
    """Split a byte stream into lines, bounded: at most ``max_line_bytes`` pending at any time."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._pending = bytearray()

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        """Return the complete lines in ``data`` (without ``\\n``); raises PluginOutputTooLarge."""
        self._pending += data
        lines: list[bytes] = []
        while True:
            idx = self._pending.find(b"\n")
            if idx < 0:
                break
            if idx > self.max_line_bytes:
                raise PluginOutputTooLarge(f"plugin line over {self.max_line_bytes} bytes")
            lines.append(bytes(self._pending[:idx]).rstrip(b"\r"))
            del self._pending[: idx + 1]
        if len(self._pending) > self.max_line_bytes:
            raise PluginOutputTooLarge(f"plugin line over {self.max_line_bytes} bytes")
        return [line for line in lines if line.strip()]
