"""Plain HTTP on the gateway port (sans-IO): a parsed request in, a response out.

Rules (``shared/specs/openclaw-gateway.md`` §3):
- ``GET``/``HEAD`` ``/health``, ``/healthz`` -> 200 ``{"ok":true,"status":"live"}``, no auth;
- ``GET``/``HEAD`` ``/ready``, ``/readyz`` -> 200 ``{"ready":true,"failing":[],"uptimeMs":…,"eventLoop":…}``
  (503 with ``ready:false`` while shutting down), no auth;
- everything else needs ``Authorization: Bearer <gateway token>`` (constant-time compare): without it
  401 ``{"error":{"message":"Unauthorized","type":"unauthorized"}}``; with it ``GET /`` is a short text
  page and any other path is 404 JSON;
- every response closes the connection (``Connection: close``): the gateway's HTTP is for probes.
The trio shell (``server.py``) reads the request head with h11 and writes :func:`render`'s bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from appliance.gateway.protocol import tokens_match

__all__ = [
    "HttpContext",
    "HttpRequest",
    "HttpResponse",
    "bearer_token",
    "is_websocket_upgrade",
    "render",
    "respond",
    "simple_error",
]

_PUBLIC_HEALTH = frozenset({"/health", "/healthz"})
_PUBLIC_READY = frozenset({"/ready", "/readyz"})
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_JSON = "application/json; charset=utf-8"


@attrs.frozen
class HttpRequest:
    method: str
    target: str
    #: (lower-case name, value) pairs in arrival order
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0].split("#", 1)[0] or "/"

    def header(self, name: str) -> str | None:
        """The first value of ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    @classmethod
    def from_h11(cls, method: bytes, target: bytes, headers: Any, body: bytes = b"") -> HttpRequest:
        """From an ``h11.Request``'s fields (h11 already lower-cases header names)."""
        return cls(
            method.decode("ascii", "replace"),
            target.decode("ascii", "replace"),
            tuple((bytes(k).decode("latin-1").lower(), bytes(v).decode("latin-1")) for k, v in headers),
            body,
        )


@attrs.frozen
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = _JSON
    headers: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class HttpContext:
    """What a response may depend on, snapshotted by the shell for each request."""

    auth_mode: str = "token"
    token: str = attrs.field(default="", repr=False)
    uptime_ms: int = 0
    ready: bool = True
    failing: tuple[str, ...] = ()
    event_loop: Mapping[str, Any] | None = None
    version: str = ""


def _json(status: int, value: Any, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    body = json.dumps(value, separators=(",", ":")).encode()
    return HttpResponse(status, body, _JSON, headers)


def simple_error(status: int, message: str, kind: str) -> HttpResponse:
    """``{"error":{"message":…,"type":…}}``, the shape OpenClaw's HTTP errors use."""
    return _json(status, {"error": {"message": message, "type": kind}})


def bearer_token(request: HttpRequest) -> str | None:
    value = request.header("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def is_websocket_upgrade(request: HttpRequest) -> bool:
    """``GET`` with ``Upgrade: websocket`` (the ``Connection``/key checks are the handshake's job)."""
    upgrade = request.header("upgrade") or ""
    return request.method == "GET" and "websocket" in upgrade.lower()


def _authorized(request: HttpRequest, ctx: HttpContext) -> bool:
    if ctx.auth_mode == "none":
        return True
    presented = bearer_token(request)
    if presented is None or not ctx.token:
        return False
    return tokens_match(presented, ctx.token)


def respond(request: HttpRequest, ctx: HttpContext) -> HttpResponse:
    """Answer one HTTP request (see the module rules)."""
    path = request.path
    if path in _PUBLIC_HEALTH or path in _PUBLIC_READY:
        if request.method not in ("GET", "HEAD"):
            return HttpResponse(405, b"", _JSON, (("Allow", "GET, HEAD"),))
        if path in _PUBLIC_HEALTH:
            return _json(200, {"ok": True, "status": "live"})
        body: dict[str, Any] = {
            "ready": ctx.ready,
            "failing": list(ctx.failing),
            "uptimeMs": ctx.uptime_ms,
        }
        if ctx.event_loop is not None:
            body["eventLoop"] = dict(ctx.event_loop)
        return _json(200 if ctx.ready else 503, body)
    if not _authorized(request, ctx):
        return _json(
            401,
            {"error": {"message": "Unauthorized", "type": "unauthorized"}},
            (("WWW-Authenticate", "Bearer"),),
        )
    if path == "/" and request.method in ("GET", "HEAD"):
        text = f"appliance gateway {ctx.version}\nWebSocket: this URL (OpenClaw gateway protocol v4)\n"
        return HttpResponse(200, text.encode(), "text/plain; charset=utf-8")
    return simple_error(404, "Not Found", "not_found")


def render(response: HttpResponse, *, head_only: bool = False) -> bytes:
    """The response as HTTP/1.1 bytes, with ``Content-Length`` and ``Connection: close``."""
    reason = _REASONS.get(response.status, "Unknown")
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        "Connection: close",
    ]
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return head if head_only else head + response.body
