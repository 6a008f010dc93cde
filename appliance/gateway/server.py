"""The gateway's trio shell: one TCP port, WebSocket at ``/`` and plain HTTP beside it.

Per accepted TCP connection: read the HTTP request head with h11 (size and time bounded). A WebSocket
upgrade for ``/`` is completed by wsproto (fed the bytes already read) and served by :class:`_WebSocket`, a
~100-line shell over wsproto; anything else is answered by :mod:`appliance.gateway.http` and closed. (Not
trio-websocket: at import it scans installed distributions through ``importlib.metadata``, ~2 MB of RSS
and tens of ms of cold start, and its server side hangs on a rejected handshake.)

Per WebSocket (:class:`_WsSession`), the shape trio-websocket itself uses:
- one **reader** loop feeds text frames to the sans-IO :class:`~appliance.gateway.protocol.ServerConnection`
  and acts on what it returns; each request runs in its **own task** (a slow method never blocks the
  reader or pings), at most ``max_in_flight`` at once per connection (then the reader waits: TCP
  back-pressure, not errors);
- one **writer** task owns the socket's send side and drains an outbox; every producer (responses,
  per-connection events, broadcasts from other connections) only queues, never waits on a peer. When the
  queued bytes pass ``max_buffered_bytes`` the client is a slow consumer: drop-if-slow events are skipped
  (leaving a ``seq`` gap), anything else closes the socket 1008 "slow consumer", as OpenClaw does;
- a handshake timer closes 1008 "handshake timeout" when no valid ``connect`` came in time.

Handler outcomes: an :class:`~appliance.errors.ApplianceError` becomes its error frame; any other exception
is a bug, logged with its traceback and answered UNAVAILABLE "internal error". Bad input never ends the
server and only ends a connection where the protocol says so. One log line per request
(``request_handled`` with method, duration_ms, ok, code; ``conn_id``/``req_id`` bound).

Graceful shutdown (:meth:`GatewayServer.shutdown`): stop accepting, broadcast ``shutdown`` {reason,
restartExpectedMs}, refuse new requests, let in-flight ones finish within ``shutdown_grace_s``, then close
every WebSocket with 1012. Cancelling :meth:`GatewayServer.serve` instead stops everything at once.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import h11
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState as WsState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError as WsLocalError
from wsproto.utilities import RemoteProtocolError as WsRemoteError

from appliance.errors import ApplianceError, RemoteProtocolError, Unavailable
from appliance.gateway import http as http_core
from appliance.gateway.dispatch import MethodContext, MethodTable
from appliance.gateway.protocol import (
    CloseCode,
    ConnectAccepted,
    ConnectionState,
    ProtocolConfig,
    RequestReceived,
    ServerConnection,
    hello_ok,
    truncate_close_reason,
)
from appliance.gateway.state import EncodedEvent, GatewayState
from appliance.log import bound_context, get_logger
from appliance.models.frames import DetailCode, GatewayEvent

__all__ = ["GatewayServer", "HttpRoute", "bind_hosts", "serve_gateway"]

log = get_logger("appliance.gateway")

MAX_HEAD_BYTES = 16_384
MAX_HTTP_BODY_BYTES = 1_048_576
RECEIVE_BYTES = 65_536
HTTP_HEAD_TIMEOUT_S = 10.0
WS_UPGRADE_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 2.0
LINGER_S = 0.5
DEFAULT_MAX_IN_FLIGHT = 32

SnapshotBuilder = Callable[[GatewayState], dict[str, Any]]
#: ``handler(stream, request, body) -> HTTP status sent`` for an extra HTTP path (see add_http_route)
HttpRoute = Callable[[trio.abc.Stream, http_core.HttpRequest, bytes], Awaitable[int]]


def bind_hosts(bind: str) -> list[str]:
    """Addresses for ``gateway.bind``: ``loopback`` is 127.0.0.1 and ::1 (as OpenClaw binds), ``lan``
    every IPv4 interface, anything else is taken as one literal address."""
    if bind in ("loopback", "localhost"):
        return ["127.0.0.1", "::1"]
    if bind in ("lan", "all"):
        return ["0.0.0.0"]  # binding every interface is what "lan" means
    return [bind]


def _default_snapshot(state: GatewayState) -> dict[str, Any]:
    from appliance.gateway.methods.system import build_snapshot

    return build_snapshot(state)


def _presence_payload(state: GatewayState) -> dict[str, Any]:
    from appliance.gateway.methods.system import presence_entries

    return {"presence": presence_entries(state)}


class _Closed(Exception):
    """The WebSocket is closed (peer close, close handshake done, or the TCP connection went away)."""


class _WebSocket:
    """A server WebSocket over wsproto: messages in (with a size cap), messages and close out.

    One task reads (:meth:`get_message`, which also answers pings and the peer's close); any task may
    send; sends are serialised by a lock. ``max_message`` caps a message's length in characters/bytes
    and may be raised after the handshake (the protocol core checks exact UTF-8 sizes).
    """

    def __init__(self, stream: trio.abc.Stream, ws: WSConnection, max_message: int) -> None:
        self._stream = stream
        self._ws = ws
        self._lock = trio.StrictFIFOLock()
        self._events: deque[Any] = deque()
        self._parts: list[Any] = []
        self._size = 0
        self.max_message = max_message
        self.close_code: int | None = None
        self.close_reason: str | None = None

    @classmethod
    async def accept(cls, stream: trio.abc.Stream, head: bytes, max_message: int) -> _WebSocket | None:
        """Complete the upgrade whose request head (``head``) was already read; None if wsproto refuses it."""
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.receive_data(head)
            request = next((e for e in ws.events() if isinstance(e, Request)), None)
        except WsRemoteError as exc:
            if exc.event_hint is not None:
                with trio.move_on_after(CLOSE_TIMEOUT_S):
                    await stream.send_all(ws.send(exc.event_hint))
            return None
        if request is None:
            return None
        await stream.send_all(ws.send(AcceptConnection()))
        return cls(stream, ws, max_message)

    async def get_message(self) -> str | bytes:
        """The next complete message. Raises _Closed once the connection is closed."""
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, TextMessage | BytesMessage):
                    self._size += len(event.data)
                    if self._size > self.max_message:
                        await self.send_close(1009, "max payload size exceeded")
                        self._parts.clear()
                        raise _Closed
                    self._parts.append(event.data)
                    if event.message_finished:
                        parts, self._parts, self._size = self._parts, [], 0
                        return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)
                elif isinstance(event, Ping):
                    await self._send(event.response())
                elif isinstance(event, CloseConnection):
                    if self.close_code is None:
                        self.close_code, self.close_reason = event.code, event.reason or None
                    if self._ws.state is WsState.REMOTE_CLOSING:  # answer as OpenClaw does: 1000
                        await self._send(CloseConnection(code=1000))
                    raise _Closed
            if self._ws.state is WsState.CLOSED:
                raise _Closed
            try:
                data = await self._stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                if self.close_code is None:
                    self.close_code = 1006
                raise _Closed
            try:
                self._ws.receive_data(bytes(data))
                self._events.extend(self._ws.events())
            except WsRemoteError:
                self.close_code = self.close_code or 1002
                raise _Closed from None

    async def send_message(self, message: str) -> None:
        """Raises _Closed when the connection can no longer send."""
        await self._send(Message(data=message))

    async def send_close(self, code: int, reason: str) -> None:
        """Start the close handshake (the reader sees the peer's answer and stops)."""
        if self._ws.state is not WsState.OPEN:
            return
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason or None
        with contextlib.suppress(_Closed):
            await self._send(CloseConnection(code=code, reason=reason or None))

    async def _send(self, event: Any) -> None:
        try:
            data = self._ws.send(event)
        except WsLocalError:
            raise _Closed from None
        async with self._lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise _Closed from None


class GatewayServer:
    """The running gateway: listeners, connections, tick and event-loop monitor, graceful shutdown.

    ``await nursery.start(server.serve)`` returns the bound port; ``await server.shutdown(reason)``
    stops it gracefully and returns when every socket is closed (``serve`` then returns too).
    """

    def __init__(
        self,
        state: GatewayState,
        table: MethodTable,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        snapshot: SnapshotBuilder = _default_snapshot,
        http_routes: Mapping[str, HttpRoute] | None = None,
    ) -> None:
        self.state = state
        self.table = table
        self.config = ProtocolConfig.from_settings(state.settings.gateway)
        self.max_in_flight = max_in_flight
        self.snapshot = snapshot
        self.http_routes: dict[str, HttpRoute] = dict(http_routes or {})
        self.methods: list[str] = table.advertised()
        self.events: list[str] = [str(e) for e in GatewayEvent]
        self.port: int | None = None
        self.listeners: list[trio.SocketListener] = []
        self._sessions: dict[str, _WsSession] = {}
        self._open_connections = 0
        self._accept_scope = trio.CancelScope()
        self._accept_done = trio.Event()
        self._shutdown_started = False
        self._stopped = trio.Event()
        self._no_sessions = trio.Event()
        self._no_sessions.set()

    # ---- lifecycle

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report the port through ``task_status``, serve until :meth:`shutdown` completes.

        Raises Unavailable when the first bind address cannot be bound (port in use, no such address).
        """
        self.listeners = await self._open_listeners()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._accept, nursery)
                nursery.start_soon(self._tick_loop)
                nursery.start_soon(self._monitor_loop)
                log.info(
                    "gateway_started",
                    port=self.port,
                    hosts=[_sockname(ls) for ls in self.listeners],
                    methods=len(self.methods),
                )
                assert self.port is not None
                task_status.started(self.port)
                await self._stopped.wait()
                nursery.cancel_scope.cancel()
        finally:
            for listener in self.listeners:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(listener)

    async def shutdown(self, reason: str = "shutdown", *, restart_expected_ms: int | None = None) -> None:
        """Graceful stop (see module docstring). Safe to call more than once; later calls just wait."""
        if self._shutdown_started:
            await self._stopped.wait()
            return
        self._shutdown_started = True
        self.state.shutting_down = True
        grace = self.state.settings.gateway.shutdown_grace_s
        log.info("shutdown_started", reason=reason, connections=len(self._sessions), grace_s=grace)
        self._accept_scope.cancel()
        with trio.move_on_after(1.0):
            await self._accept_done.wait()
        for listener in self.listeners:
            await trio.aclose_forcefully(listener)
        self.state.broadcast(
            GatewayEvent.SHUTDOWN, {"reason": reason, "restartExpectedMs": restart_expected_ms}
        )
        sessions = list(self._sessions.values())
        for session in sessions:
            session.begin_drain()
        with trio.move_on_after(grace) as grace_scope:
            for session in sessions:
                await session.wait_idle()
        if grace_scope.cancelled_caught:
            log.warning("shutdown_grace_expired", in_flight=sum(s.in_flight for s in sessions))
        for session in list(self._sessions.values()):
            session.request_close(CloseCode.SERVICE_RESTART, "service restart")
        with trio.move_on_after(CLOSE_TIMEOUT_S + 1.0):
            await self._no_sessions.wait()
        log.info("shutdown_finished", reason=reason)
        self._stopped.set()

    async def _open_listeners(self) -> list[trio.SocketListener]:
        gateway = self.state.settings.gateway
        port = gateway.port
        listeners: list[trio.SocketListener] = []
        for index, host in enumerate(bind_hosts(gateway.bind)):
            try:
                opened = await trio.open_tcp_listeners(port, host=host)
            except OSError as exc:
                if index == 0:
                    for listener in listeners:
                        await trio.aclose_forcefully(listener)
                    raise Unavailable(
                        f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                        details={"host": host, "port": port},
                    ) from exc
                log.info("listen_skipped", host=host, port=port, error=str(exc.strerror or exc))
                continue
            if port == 0:
                port = opened[0].socket.getsockname()[1]
            listeners.extend(opened)
        self.port = port
        return listeners

    async def _accept(self, handler_nursery: trio.Nursery) -> None:
        try:
            with self._accept_scope:
                await trio.serve_listeners(self._handle_tcp, self.listeners, handler_nursery=handler_nursery)
        finally:
            self._accept_done.set()

    async def _tick_loop(self) -> None:
        interval = self.config.tick_interval_ms / 1000
        while True:
            await trio.sleep(interval)
            self.state.broadcast(GatewayEvent.TICK, {"ts": self.state.wall_ms()})

    async def _monitor_loop(self) -> None:
        stats = self.state.event_loop
        interval = stats.interval_ms / 1000
        host = _HostCpu()
        last_cpu, last_thread, last = time.process_time(), time.thread_time(), trio.current_time()
        while True:
            target = trio.current_time() + interval
            await trio.sleep_until(target)
            now = trio.current_time()
            cpu, thread = time.process_time(), time.thread_time()
            wall = max(now - last, 1e-6)
            stats.record(
                delay_ms=(now - target) * 1000,
                interval_ms=wall * 1000,
                main_thread_ratio=(thread - last_thread) / wall,
                process_ratio=(cpu - last_cpu) / wall,
                host_utilization=host.sample(),
                now_ms=self.state.wall_ms(),
            )
            last_cpu, last_thread, last = cpu, thread, now

    # ---- connections

    async def _handle_tcp(self, stream: trio.abc.Stream) -> None:
        conn_id = str(uuid.uuid4())
        try:
            if (
                self._open_connections >= self.state.settings.gateway.max_connections
                or self._shutdown_started
            ):
                log.warning(
                    "connection_refused", reason="limit" if not self._shutdown_started else "shutdown"
                )
                await self._send_http(
                    stream, http_core.simple_error(503, "Service Unavailable", "unavailable")
                )
                return
            self._open_connections += 1
            try:
                with bound_context(conn_id=conn_id):
                    await self._handle_connection(stream, conn_id)
            finally:
                self._open_connections -= 1
        except (trio.BrokenResourceError, trio.ClosedResourceError, _Closed):
            pass
        except Exception as exc:  # a bug in one connection must not take the server down
            log.exception("connection_crashed", exc, conn_id=conn_id)  # noqa: TRY401 -- our Logger.exception takes the exception explicitly
        finally:
            await trio.aclose_forcefully(stream)

    async def _handle_connection(self, stream: trio.abc.Stream, conn_id: str) -> None:
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        raw = bytearray()
        head: h11.Request | h11.RemoteProtocolError | None = None
        with trio.move_on_after(HTTP_HEAD_TIMEOUT_S):
            head = await _read_head(stream, parser, raw)
        if head is None:
            return
        if isinstance(head, h11.RemoteProtocolError):
            status = head.error_status_hint if head.error_status_hint in (400, 431) else 400
            await self._send_http(stream, http_core.simple_error(status, "Bad Request", "invalid_request"))
            return
        request = http_core.HttpRequest.from_h11(head.method, head.target, head.headers)
        if http_core.is_websocket_upgrade(request):
            await self._serve_websocket(stream, bytes(raw), request, conn_id)
        else:
            await self._serve_http(stream, parser, request)

    async def _send_http(
        self, stream: trio.abc.Stream, response: http_core.HttpResponse, *, head_only: bool = False
    ) -> None:
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            await stream.send_all(http_core.render(response, head_only=head_only))
        await self._linger_close(stream)

    async def _linger_close(self, stream: trio.abc.Stream) -> None:
        """Close gently: half-close and discard what the peer still sends, so unread request bytes do
        not turn our close into a reset that could eat the response."""
        with trio.move_on_after(LINGER_S):
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            while await stream.receive_some(RECEIVE_BYTES):
                pass

    def http_context(self) -> http_core.HttpContext:
        state = self.state
        return http_core.HttpContext(
            auth_mode=self.config.auth_mode,
            token=self.config.token,
            uptime_ms=state.uptime_ms(),
            ready=not state.shutting_down,
            failing=("shutdown",) if state.shutting_down else (),
            event_loop=state.event_loop.to_wire(),
            version=state.version,
        )

    def add_http_route(self, path: str, handler: HttpRoute) -> None:
        """Serve ``path`` (exact match, any method) with ``handler(stream, request, body) -> status``.

        The handler writes its whole response on ``stream`` (streaming is fine) and does its own auth;
        the server has read the body (at most ``max_payload_bytes``) and closes the connection after.
        ``/v1/chat/completions`` is mounted this way (``appliance.gateway.openai_http``).
        """
        self.http_routes[path] = handler

    async def _serve_http(
        self, stream: trio.abc.Stream, parser: h11.Connection, request: http_core.HttpRequest
    ) -> None:
        started = time.perf_counter()
        route = self.http_routes.get(request.path)
        limit = self.config.max_payload_bytes if route is not None else MAX_HTTP_BODY_BYTES
        body: bytearray | None = bytearray() if route is not None else None
        if route is not None and parser.they_are_waiting_for_100_continue:
            await stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not parser.they_are_waiting_for_100_continue:
            too_big = True
            with trio.move_on_after(HTTP_HEAD_TIMEOUT_S):
                too_big = await _read_body(stream, parser, limit, body)
            if too_big:
                await self._send_http(
                    stream, http_core.simple_error(413, "Content Too Large", "invalid_request")
                )
                return
        if route is not None:
            payload = bytes(body or b"")
            status = await route(stream, attrs.evolve(request, body=payload), payload)
            response_status = status
        else:
            response = http_core.respond(request, self.http_context())
            response_status = response.status
        log.info(
            "http_handled",
            http_method=request.method,
            path=request.path,
            status=response_status,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        if route is None:
            await self._send_http(stream, response, head_only=request.method == "HEAD")
        else:
            await self._linger_close(stream)

    async def _serve_websocket(
        self, stream: trio.abc.Stream, raw: bytes, request: http_core.HttpRequest, conn_id: str
    ) -> None:
        if request.path != "/":
            await self._send_http(stream, http_core.simple_error(404, "Not Found", "not_found"))
            return
        if (
            not request.header("sec-websocket-key")
            or "upgrade" not in (request.header("connection") or "").lower()
        ):
            await self._send_http(
                stream, http_core.simple_error(400, "Bad WebSocket upgrade", "invalid_request")
            )
            return
        if (request.header("sec-websocket-version") or "").strip() != "13":
            response = attrs.evolve(
                http_core.simple_error(426, "Unsupported WebSocket version", "invalid_request"),
                headers=(("Sec-WebSocket-Version", "13"),),
            )
            await self._send_http(stream, response)
            return
        ws: _WebSocket | None = None
        with trio.move_on_after(WS_UPGRADE_TIMEOUT_S):
            ws = await _WebSocket.accept(stream, raw, self.config.preauth_max_bytes)
        if ws is None:
            return
        session = _WsSession(self, ws, conn_id, _peername(stream))
        self._sessions[conn_id] = session
        if len(self._sessions) == 1:
            self._no_sessions = trio.Event()
        try:
            await session.run()
        finally:
            del self._sessions[conn_id]
            if not self._sessions:
                self._no_sessions.set()


@attrs.frozen
class _CloseRequest:
    code: int
    reason: str


class _WsSession:
    """One gateway WebSocket: reader loop, writer task, request tasks (see module docstring)."""

    def __init__(self, server: GatewayServer, ws: _WebSocket, conn_id: str, remote: str) -> None:
        self.server = server
        self.state = server.state
        self.config = server.config
        self.ws = ws
        self.conn_id = conn_id
        self.remote = remote
        self.conn = ServerConnection(server.config, conn_id=conn_id)
        self._out_send, self._out_recv = trio.open_memory_channel[str | _CloseRequest](math.inf)
        self._buffered = 0
        self._closing: _CloseRequest | None = None
        self._draining = False
        self.in_flight = 0
        self._idle = trio.Event()
        self._idle.set()
        self._slot_freed = trio.Event()
        self._handshake_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._opened = time.monotonic()
        self._requests = 0

    # ---- main loop

    async def run(self) -> None:
        """Serve until the socket is closed (by the peer, or by us and then answered or timed out)."""
        log.debug("connection_opened", remote=self.remote)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._writer)
                nursery.start_soon(self._handshake_timer)
                self._enqueue(self.conn.challenge_frame(str(uuid.uuid4()), self.state.wall_ms()))
                await self._reader()
                nursery.cancel_scope.cancel()
        finally:
            self.conn.close()
            self._unregister()
            log.info(
                "connection_closed",
                remote=self.remote,
                code=self.ws.close_code,
                reason=self.ws.close_reason,
                requests=self._requests,
                duration_ms=int((time.monotonic() - self._opened) * 1000),
            )

    async def _reader(self) -> None:
        """Read until closed. Once we have asked to close, frames still arriving are discarded."""
        while True:
            try:
                message = await self.ws.get_message()
            except _Closed:
                return
            if self._closing is not None:
                continue
            now = self.state.monotonic()
            try:
                if isinstance(message, str):
                    events = self.conn.receive_text(message, now)
                else:
                    events = self.conn.receive_bytes(message, now)
            except RemoteProtocolError as exc:
                self._reject(exc)
                continue
            for event in events:
                if isinstance(event, ConnectAccepted):
                    self._on_connect(event)
                elif isinstance(event, RequestReceived):
                    await self._on_request(event)

    async def _writer(self) -> None:
        """The only sender of queued frames; a close request is sent after what was queued before it."""
        async for item in self._out_recv:
            if isinstance(item, _CloseRequest):
                await self._close_and_wait(item)
                return
            try:
                await self.ws.send_message(item)
            except _Closed:
                return
            self._buffered -= len(item)

    async def _close_and_wait(self, request: _CloseRequest) -> None:
        """Send the close frame, give the peer CLOSE_TIMEOUT_S to answer, then drop the connection."""
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            await self.ws.send_close(request.code, request.reason)
            await trio.sleep(CLOSE_TIMEOUT_S)  # the reader ends the session when the answer comes
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _handshake_timer(self) -> None:
        with self._handshake_scope:
            await trio.sleep(self.state.settings.gateway.handshake_timeout_ms / 1000)
            if self.conn.state is ConnectionState.AWAIT_CONNECT:
                log.info("handshake_timeout", remote=self.remote)
                self.conn.close()
                self.request_close(CloseCode.POLICY_VIOLATION, "handshake timeout")

    # ---- outbox

    def _enqueue(self, text: str) -> bool:
        if self._closing is not None:
            return False
        if self._buffered > self.config.max_buffered_bytes:
            log.warning(  # conn_id given: a broadcast runs in the publisher's task and context
                "slow_consumer",
                conn_id=self.conn_id,
                remote=self.remote,
                buffered_bytes=self._buffered,
                limit_bytes=self.config.max_buffered_bytes,
                close_code=int(CloseCode.POLICY_VIOLATION),
            )
            self._abort(CloseCode.POLICY_VIOLATION, "slow consumer")
            return False
        self._buffered += len(text)
        self._out_send.send_nowait(text)
        return True

    def request_close(self, code: int, reason: str) -> None:
        """Close after everything queued so far has been sent."""
        if self._closing is not None:
            return
        self._closing = _CloseRequest(code, truncate_close_reason(reason))
        self._out_send.send_nowait(self._closing)

    def _abort(self, code: int, reason: str) -> None:
        """Close now, dropping whatever is queued (the peer is not reading)."""
        self._closing = _CloseRequest(code, reason)
        if self._nursery is not None:
            self._nursery.start_soon(self._close_and_wait, self._closing)

    # ---- EventSink (broadcasts from GatewayState)

    def deliver(self, event: str, encoded: EncodedEvent, *, drop_if_slow: bool = False) -> None:
        if self._closing is not None or not self.conn.wants_event(event):
            return
        if drop_if_slow and self._buffered > self.config.max_buffered_bytes:
            self.conn.skip_seq()
            return
        self._enqueue(
            self.conn.event_frame_json(encoded.event_json, encoded.payload_json, encoded.state_version_json)
        )

    async def _emit(self, event: str, payload: Any) -> None:
        """``MethodContext.emit``: an event for this connection only."""
        if self.conn.state is ConnectionState.OPEN:
            self._enqueue(self.conn.event_frame(event, payload))
        await trio.lowlevel.checkpoint()

    async def _ack(self, request_id: str, payload: Any) -> None:
        """``MethodContext.ack``: an early ``ok:true`` response; the final one follows."""
        self._enqueue(self.conn.response_frame(request_id, payload))
        await trio.lowlevel.checkpoint()

    # ---- protocol events

    def _reject(self, exc: RemoteProtocolError) -> None:
        reply = exc.reply
        log.info(
            "frame_rejected",
            code=str(reply.code),
            detail_code=(reply.details or {}).get("code"),
            error=reply.message,
            close_code=exc.close_code,
        )
        if exc.request_id is not None:
            self._enqueue(self.conn.error_frame(exc.request_id, reply))
        if exc.close_code is not None:
            self.request_close(exc.close_code, reply.message)

    def _on_connect(self, accepted: ConnectAccepted) -> None:
        self._handshake_scope.cancel()
        self.ws.max_message = self.config.max_payload_bytes
        state = self.state
        client = accepted.params.client
        presence_changed = False
        if not client.is_cli():
            entry: dict[str, Any] = {
                "host": client.display_name or client.id,
                "version": client.version,
                "platform": client.platform,
                "mode": client.mode,
                "reason": "connect",
                "roles": [accepted.role],
                "scopes": list(accepted.scopes),
                "ts": state.wall_ms(),
            }
            if client.device_family:
                entry["deviceFamily"] = client.device_family
            if client.instance_id:
                entry["instanceId"] = client.instance_id
            state.presence[self.conn_id] = entry
            state.presence_version += 1
            presence_changed = True
        try:
            payload = hello_ok(
                accepted,
                config=self.config,
                server={
                    "version": state.version,
                    "buildId": f"appliance-{state.version}",
                    "bootId": state.boot_id,
                    "connId": self.conn_id,
                },
                methods=self.server.methods,
                events=self.server.events,
                snapshot=self.server.snapshot(state),
            )
            frame = self.conn.response_frame(accepted.request_id, payload)
        except Exception as exc:  # building the snapshot is our code: a bug, not the client's fault
            log.exception("hello_failed", exc)  # noqa: TRY401 -- our Logger.exception takes the exception explicitly
            self._enqueue(self.conn.error_frame(accepted.request_id, Unavailable("internal error")))
            self.request_close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        self._enqueue(frame)
        state.broadcasters[self.conn_id] = self
        state.fanout.connection_opened(self.conn_id, client_caps(accepted))
        if presence_changed:
            state.broadcast(
                GatewayEvent.PRESENCE,
                _presence_payload(state),
                drop_if_slow=True,
                state_version=state.state_version(),
            )
        log.info(
            "connect_accepted",
            remote=self.remote,
            client=client.id,
            client_mode=client.mode,
            client_version=client.version,
            role=accepted.role,
            scopes=list(accepted.scopes),
            auth=accepted.auth_method,
        )

    async def _on_request(self, request: RequestReceived) -> None:
        """Start the request's task; with ``max_in_flight`` running, first wait for one to finish (the
        reader stops reading meanwhile, so a pipelining client is slowed down by TCP, not refused)."""
        self._requests += 1
        while self.in_flight >= self.server.max_in_flight and not self._draining:
            await self._slot_freed.wait()
        if self._draining:
            error = Unavailable(
                "gateway is shutting down",
                details={"code": str(DetailCode.SHUTTING_DOWN)},
                retry_after_ms=1000,
            )
            log.info(
                "request_handled",
                req_id=request.request_id,
                method=request.method,
                ok=False,
                code=str(error.code),
                duration_ms=0.0,
            )
            self._enqueue(self.conn.error_frame(request.request_id, error))
            return
        if self.in_flight == 0:
            self._idle = trio.Event()
        self.in_flight += 1
        self.state.active_requests += 1
        assert self._nursery is not None
        self._nursery.start_soon(self._handle_request, request)

    async def _handle_request(self, request: RequestReceived) -> None:
        started = time.perf_counter()
        try:
            with bound_context(req_id=request.request_id, method=request.method):
                frame, ok, code = await self._dispatch(request)
                self._enqueue(frame)
                log.info(
                    "request_handled",
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                    ok=ok,
                    code=code,
                )
        finally:
            self.in_flight -= 1
            self.state.active_requests -= 1
            self._slot_freed.set()
            self._slot_freed = trio.Event()
            if self.in_flight == 0:
                self._idle.set()

    async def _dispatch(self, request: RequestReceived) -> tuple[str, bool, str | None]:
        """Run the handler; return the response frame, ok and the error code."""
        try:
            spec = self.server.table.resolve(request.method, self.conn.scopes)
            ctx = MethodContext(
                state=self.state,
                conn_id=self.conn_id,
                req_id=request.request_id,
                scopes=self.conn.scopes,
                emit=self._emit,
                ack=functools.partial(self._ack, request.request_id),
            )
            result = await spec.handler(ctx, request.params)
            return self.conn.response_frame(request.request_id, result), True, None
        except ApplianceError as err:
            try:
                return self.conn.error_frame(request.request_id, err), False, str(err.code)
            except (TypeError, ValueError) as exc:  # details that are not JSON: our bug
                log.exception("request_failed", exc)  # noqa: TRY401 -- our Logger.exception takes the exception explicitly
        except Exception as exc:
            log.exception("request_failed", exc)  # noqa: TRY401 -- our Logger.exception takes the exception explicitly
        return self.conn.error_frame(request.request_id, Unavailable("internal error")), False, "UNAVAILABLE"

    # ---- shutdown

    def begin_drain(self) -> None:
        self._draining = True
        self._slot_freed.set()  # a reader waiting for a slot now refuses instead

    async def wait_idle(self) -> None:
        while self.in_flight:
            await self._idle.wait()

    def _unregister(self) -> None:
        state = self.state
        state.broadcasters.pop(self.conn_id, None)
        state.fanout.connection_closed(self.conn_id)  # unsubscribe on disconnect, whatever the cause
        if state.presence.pop(self.conn_id, None) is not None:
            state.presence_version += 1
            try:
                state.broadcast(
                    GatewayEvent.PRESENCE,
                    _presence_payload(state),
                    drop_if_slow=True,
                    state_version=state.state_version(),
                )
            except Exception as exc:
                log.exception("presence_broadcast_failed", exc)  # noqa: TRY401 -- our Logger.exception takes the exception explicitly


def client_caps(accepted: ConnectAccepted) -> tuple[str, ...]:
    """The ``caps`` a client declared in ``connect`` (``session-scoped-events`` changes its routing)."""
    return tuple(accepted.params.caps)


async def serve_gateway(
    state: GatewayState, table: MethodTable, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run a :class:`GatewayServer` until cancelled; ``nursery.start`` returns the bound port."""
    await GatewayServer(state, table).serve(task_status=task_status)


async def _read_head(
    stream: trio.abc.ReceiveStream, parser: h11.Connection, raw: bytearray
) -> h11.Request | h11.RemoteProtocolError | None:
    """Read until a full request head; None on EOF, the h11 error on a malformed or oversized head."""
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as exc:
            return exc
        if event is h11.NEED_DATA:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                return None
            raw += data
            parser.receive_data(bytes(data))
            continue
        if isinstance(event, h11.Request):
            end = raw.find(b"\r\n\r\n")
            if end > MAX_HEAD_BYTES or (end < 0 and len(raw) > MAX_HEAD_BYTES):  # h11 only caps partial heads
                return h11.RemoteProtocolError("request head too large", error_status_hint=431)
            return event
        return None


async def _read_body(
    stream: trio.abc.ReceiveStream, parser: h11.Connection, limit: int, keep: bytearray | None
) -> bool:
    """Read the request body into ``keep`` (or discard it, so closing does not reset the connection);
    True if it is larger than ``limit``."""
    size = 0
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError:
            return False
        if event is h11.NEED_DATA:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                return False
            parser.receive_data(bytes(data))
            continue
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > limit:
                return True
            if keep is not None:
                keep += event.data
            continue
        return False


class _HostCpu:
    """Whole-host CPU utilisation between two samples, from /proc/stat (None where it is unreadable)."""

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None

    def sample(self) -> float | None:
        try:
            with open("/proc/stat", "rb") as fh:
                fields = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle, total = fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields)
        last, self._last = self._last, (idle, total)
        if last is None or total <= last[1]:
            return None
        return 1.0 - (idle - last[0]) / (total - last[1])


def _peername(stream: trio.abc.Stream) -> str:
    try:
        host, port, *_ = stream.socket.getpeername()  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return "?"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _sockname(listener: trio.SocketListener) -> str:
    try:
        host, port, *_ = listener.socket.getsockname()
    except (OSError, ValueError):
        return "?"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
