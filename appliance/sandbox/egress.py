"""Egress proxy request parsing (sans-IO): which host and port a sandboxed client asks for.

The proxy speaks the two forms HTTP clients use through a proxy: ``CONNECT host:port`` (TLS tunnels) and
absolute-form requests (``GET http://host:port/path HTTP/1.1``), which are rewritten to origin form before
forwarding. Anything else is a bad request. The decision (allowlist) is :func:`policy.egress_allows`;
this module only parses. Rules: the head is at most :data:`MAX_HEAD` bytes; no userinfo in URLs; a
``Proxy-Authorization`` or ``Proxy-Connection`` header is never forwarded.
"""

from __future__ import annotations

import attrs

__all__ = ["MAX_HEAD", "BadProxyRequest", "ProxyTarget", "parse_proxy_head"]

MAX_HEAD = 8192
_HOP_HEADERS = (b"proxy-authorization", b"proxy-connection")


class BadProxyRequest(ValueError):
    """The client's request head is not something the proxy forwards."""


@attrs.frozen
class ProxyTarget:
    host: str
    port: int
    tunnel: bool
    forward_head: bytes = b""  # for absolute-form requests: the head to send upstream


def _split_host_port(authority: str, default_port: int) -> tuple[str, int]:
    if "@" in authority:
        raise BadProxyRequest("userinfo is not allowed in proxy targets")
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif authority.count(":") == 1:
        host, port_text = authority.split(":")
    else:
        host, port_text = authority, ""
    if port_text and not port_text.isdigit():
        raise BadProxyRequest(f"bad port in {authority!r}")
    port = int(port_text) if port_text else default_port
    if not host or not 0 < port < 65536:
        raise BadProxyRequest(f"bad target {authority!r}")
    return host.lower(), port


def parse_proxy_head(head: bytes) -> ProxyTarget:
    """Parse a complete request head (ending in CRLF CRLF). Raises :class:`BadProxyRequest`."""
    if len(head) > MAX_HEAD or not head.endswith(b"\r\n\r\n"):
        raise BadProxyRequest("request head missing or too large")
    lines = head[:-4].split(b"\r\n")
    try:
        method, target, version = lines[0].decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadProxyRequest("malformed request line") from exc
    if not version.startswith("HTTP/1."):
        raise BadProxyRequest("only HTTP/1.x")
    if method == "CONNECT":
        host, port = _split_host_port(target, 443)
        return ProxyTarget(host, port, tunnel=True)
    if not target.startswith("http://"):
        raise BadProxyRequest("only CONNECT or absolute http:// requests")
    rest = target[len("http://") :]
    authority, slash, path = rest.partition("/")
    host, port = _split_host_port(authority, 80)
    kept = [line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() not in _HOP_HEADERS]
    request_line = f"{method} /{path if slash else ''} {version}".encode("ascii")
    return ProxyTarget(
        host, port, tunnel=False, forward_head=b"\r\n".join([request_line, *kept]) + b"\r\n\r\n"
    )
