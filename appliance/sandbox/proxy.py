"""The host's egress proxy for ``net allow`` runs: a per-run unix socket, audited, allowlist only.

Why a unix socket: the container keeps ``network none`` (no interface but ``lo``), and a socket file
bind-mounted into it is reachable across network namespaces. The runner entry relays 127.0.0.1:3128 in
the container to this socket (the runner itself) and sets ``HTTP(S)_PROXY`` for the command. Every request is logged
(``egress_allowed`` / ``egress_denied`` with group, host, port); a name on the allowlist that resolves to
a loopback, link-local or unspecified address is denied (DNS must not open a path back into the host),
while an IP literal on the list is the operator's explicit choice and is connected to as written. Errors
answer the client with an HTTP status, never a traceback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket as stdsocket

import trio

from appliance.log import get_logger
from appliance.sandbox.egress import MAX_HEAD, BadProxyRequest, ProxyTarget, parse_proxy_head
from appliance.sandbox.policy import EgressAllowlist, egress_allows

__all__ = ["serve_egress_proxy"]

log = get_logger("appliance.sandbox.egress")

HEAD_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0


def _reply(status: str) -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode("ascii")


async def _read_head(stream: trio.abc.Stream) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise BadProxyRequest("request head too large")
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise BadProxyRequest("client closed before the request head ended")
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    return buf[:end], buf[end:]


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve(target: ProxyTarget) -> str:
    """The address to connect to; refuses names that resolve to local addresses."""
    infos = await trio.socket.getaddrinfo(target.host, target.port, type=stdsocket.SOCK_STREAM)
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise OSError(f"{target.host} has no address")
    if not _is_literal(target.host):
        for address in addresses:
            ip = ipaddress.ip_address(address)
            if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
                raise PermissionError(f"{target.host} resolves to local address {address}")
    return addresses[0]


async def _splice(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
    try:
        while chunk := await src.receive_some(65536):
            await dst.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    if isinstance(dst, trio.SocketStream):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await dst.send_eof()


async def _handle(client: trio.SocketStream, allowlist: EgressAllowlist, group: str) -> None:
    async with client:
        try:
            with trio.fail_after(HEAD_TIMEOUT_S):
                head, rest = await _read_head(client)
            target = parse_proxy_head(head)
        except (BadProxyRequest, trio.TooSlowError) as exc:
            log.warning("egress_denied", group=group, reason=f"bad request: {exc}")
            await _safe_send(client, _reply("400 Bad Request"))
            return
        if not egress_allows(allowlist, target.host, target.port):
            log.warning(
                "egress_denied", group=group, host=target.host, port=target.port, reason="not allowlisted"
            )
            await _safe_send(client, _reply("403 Forbidden"))
            return
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                address = await _resolve(target)
                upstream = await trio.open_tcp_stream(address, target.port)
        except PermissionError as exc:
            log.warning("egress_denied", group=group, host=target.host, port=target.port, reason=str(exc))
            await _safe_send(client, _reply("403 Forbidden"))
            return
        except (OSError, trio.TooSlowError) as exc:
            log.warning("egress_failed", group=group, host=target.host, port=target.port, reason=str(exc))
            await _safe_send(client, _reply("502 Bad Gateway"))
            return
        log.info("egress_allowed", group=group, host=target.host, port=target.port, tunnel=target.tunnel)
        async with upstream:
            if target.tunnel:
                await _safe_send(client, b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                await upstream.send_all(target.forward_head)
            if rest:
                await upstream.send_all(rest)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_splice, client, upstream)
                nursery.start_soon(_splice, upstream, client)


async def _safe_send(stream: trio.abc.Stream, data: bytes) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(data)


async def serve_egress_proxy(
    path: str,
    allowlist: EgressAllowlist,
    *,
    group: str,
    mode: int = 0o666,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on the unix socket ``path`` and proxy allowlisted requests until cancelled."""
    sock = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        await sock.bind(path)
        os.chmod(path, mode)  # the sandbox user must be able to connect
        sock.listen(16)
    except BaseException:
        sock.close()
        raise
    listener = trio.SocketListener(sock)
    try:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                client = await listener.accept()
                nursery.start_soon(_handle, client, allowlist, group)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock.close()  # synchronous: this runs while cancelled
