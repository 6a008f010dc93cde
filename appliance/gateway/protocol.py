"""The gateway protocol core, sans-IO (h11/wsproto style): text frames in, events and frames out.

One :class:`ServerConnection` per WebSocket. Its states::

    AWAIT_CONNECT --connect ok--> OPEN --close()--> CLOSED
          |                                            ^
          +---------- bad first frame / bad auth ------+   (the error says which close code to use)

Rules:
- ``receive_text`` returns a list of events (:class:`ConnectAccepted`, :class:`RequestReceived`) or raises
  :class:`~appliance.errors.RemoteProtocolError`. Its ``reply`` is the error to answer with, sent as a
  ``res`` to ``request_id`` when that is set; ``close_code`` is set when the socket must close afterwards
  (the close reason is the reply's message). Nothing else escapes, whatever the input (fuzzed in tests).
- What OpenClaw 2026.9.6 does, we do (``shared/specs/openclaw-gateway.md`` §1):
  - before ``connect``: frames are capped at ``preauth_max_bytes`` (close 1009); a frame that is not a
    request closes 1008 ``invalid request frame`` without an answer; any other first request is answered
    ``invalid handshake: first request must be connect`` and closes 1008; bad connect params are answered
    ``invalid connect params: …`` and close 1008; a protocol range without 4 is answered ``protocol
    mismatch`` (details.code PROTOCOL_MISMATCH) and closes 1002; a wrong or missing token is answered
    ``unauthorized: …`` with details.code AUTH_TOKEN_MISMATCH / AUTH_TOKEN_MISSING and closes 1008;
  - after ``connect``: frames are capped at ``max_payload_bytes`` (close 1009); a frame that is not a
    valid request is answered (id ``invalid`` when it has none) and the connection stays open;
  - tokens are compared in constant time (``hmac.compare_digest`` on UTF-8 bytes);
  - scopes: exactly what the client asked for (as observed for device-less token connects).
- Each connection has a token bucket (``rate_limit_per_s``/``rate_limit_burst``): a request over the
  limit is answered UNAVAILABLE, retryable, with ``retryAfterMs``.
- Outgoing frames are made here too, so each connection numbers its events ``seq`` 1, 2, 3…
- Time comes in as ``now`` (monotonic seconds); nonces and wall-clock ``ts`` come from the caller.
"""

from __future__ import annotations

import enum
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from appliance.errors import (
    ApplianceError,
    AuthFailed,
    BadFrame,
    InvalidRequest,
    RemoteProtocolError,
    Unavailable,
    ValidationFailed,
)
from appliance.gateway.ratelimit import TokenBucket
from appliance.models.frames import (
    MIN_CLIENT_PROTOCOL,
    MIN_NODE_PROTOCOL,
    PROTOCOL_VERSION,
    ConnectParams,
    DetailCode,
    GatewayEvent,
    RequestFrame,
    Role,
    parse_connect_params,
    parse_request,
)

if TYPE_CHECKING:
    from appliance.config.settings import GatewaySettings

__all__ = [
    "EVENT_SCOPE_GUARDS",
    "INVALID_ID",
    "CloseCode",
    "ConnectAccepted",
    "ConnectionState",
    "Event",
    "ProtocolConfig",
    "RequestReceived",
    "ServerConnection",
    "auth_failure",
    "dumps",
    "event_allowed",
    "hello_ok",
    "tokens_match",
    "truncate_close_reason",
]

#: the id OpenClaw answers with when a post-handshake frame has no usable id
INVALID_ID = "invalid"
#: RFC 6455: a close reason is at most 123 bytes of UTF-8
_MAX_CLOSE_REASON_BYTES = 123
_AUTH_HINT = "use this gateway's gateway.auth.token or pair the device"


class ConnectionState(enum.Enum):
    AWAIT_CONNECT = "await-connect"
    OPEN = "open"
    CLOSED = "closed"


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    PROTOCOL_ERROR = 1002
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013


@attrs.frozen
class ProtocolConfig:
    """What the core needs from ``GatewaySettings``; ``token`` never appears in a repr."""

    auth_mode: str = "token"
    token: str = attrs.field(default="", repr=False)
    preauth_max_bytes: int = 65_536
    max_payload_bytes: int = 4_194_304
    max_buffered_bytes: int = 8_388_608
    tick_interval_ms: int = 30_000
    rate_limit_per_s: float = 50.0
    rate_limit_burst: int = 100

    @classmethod
    def from_settings(cls, gateway: GatewaySettings) -> ProtocolConfig:
        return cls(
            auth_mode=gateway.auth,
            token=gateway.token,
            preauth_max_bytes=gateway.preauth_max_bytes,
            max_payload_bytes=gateway.max_payload_bytes,
            max_buffered_bytes=gateway.max_buffered_bytes,
            tick_interval_ms=gateway.tick_interval_ms,
            rate_limit_per_s=gateway.rate_limit_per_s,
            rate_limit_burst=gateway.rate_limit_burst,
        )

    def policy(self) -> dict[str, Any]:
        """``hello-ok.policy``. Attachment limits follow OpenClaw's rule: base64 grows data by 4/3, and
        192 KiB of the frame stay for the envelope (25 MiB frames -> 19464192 bytes of attachments)."""
        attachments = max(0, self.max_payload_bytes * 3 // 4 - 196_608)
        return {
            "maxPayload": self.max_payload_bytes,
            "maxBufferedBytes": self.max_buffered_bytes,
            "tickIntervalMs": self.tick_interval_ms,
            "attachments": {"maxBytes": attachments, "maxImageBytes": min(6_291_456, attachments)},
        }


# ------------------------------------------------------------------------------------------------ events


@attrs.frozen
class ConnectAccepted:
    """``connect`` passed every check; answer it with :func:`hello_ok` via ``response_frame``."""

    request_id: str
    params: ConnectParams
    role: str
    scopes: tuple[str, ...]
    protocol: int
    auth_method: str


@attrs.frozen
class RequestReceived:
    """A request to dispatch. ``params`` is always a dict."""

    request_id: str
    method: str
    params: dict[str, Any]
    traceparent: str | None = None


Event = ConnectAccepted | RequestReceived


# -------------------------------------------------------------------------------------------- helpers


def dumps(value: Any) -> str:
    """Compact JSON as OpenClaw's ``JSON.stringify`` writes it. Raises TypeError/ValueError for values
    that are not JSON (NaN included): a handler returning one is a bug."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def tokens_match(provided: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (time does not depend on where they differ)."""
    return hmac.compare_digest(
        provided.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def truncate_close_reason(reason: str) -> str:
    """Cut a close reason to 123 UTF-8 bytes without splitting a character."""
    raw = reason.encode("utf-8", "replace")
    if len(raw) <= _MAX_CLOSE_REASON_BYTES:
        return reason
    return raw[:_MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")


def auth_failure(reason: str) -> AuthFailed:
    """The error OpenClaw answers a failed shared-token connect with (observed for ``token_mismatch``)."""
    if reason == "token_missing_config":
        return AuthFailed(
            "unauthorized: gateway token not configured on gateway (set gateway.auth.token)",
            details={
                "code": str(DetailCode.AUTH_TOKEN_NOT_CONFIGURED),
                "authReason": reason,
                "canRetryWithDeviceToken": False,
                "recommendedNextStep": "update_auth_configuration",
            },
        )
    what, code = (
        ("missing", DetailCode.AUTH_TOKEN_MISSING)
        if reason == "token_missing"
        else ("mismatch", DetailCode.AUTH_TOKEN_MISMATCH)
    )
    return AuthFailed(
        f"unauthorized: gateway token {what} ({_AUTH_HINT})",
        details={
            "code": str(code),
            "authReason": reason,
            "canRetryWithDeviceToken": False,
            "recommendedNextStep": "update_auth_credentials",
        },
    )


#: who receives which broadcast event (OpenClaw's EVENT_SCOPE_GUARDS): ``()`` = every authenticated
#: client; otherwise an operator needs one of these scopes (admin has all; write implies read).
EVENT_SCOPE_GUARDS: Mapping[str, tuple[str, ...]] = {
    "tick": (),
    "presence": (),
    "health": (),
    "heartbeat": (),
    "shutdown": (),
    "update.available": (),
    "agent": ("operator.read",),
    "chat": ("operator.read",),
    "cron": ("operator.read",),
    "task": ("operator.read",),
    "sessions.changed": ("operator.read",),
    "session.message": ("operator.read",),
    "session.tool": ("operator.read",),
    "talk.mode": ("operator.write",),
    "exec.approval.requested": ("operator.approvals",),
    "exec.approval.resolved": ("operator.approvals",),
    "device.pair.requested": ("operator.pairing",),
    "device.pair.resolved": ("operator.pairing",),
    "node.pair.requested": ("operator.pairing",),
    "node.pair.resolved": ("operator.pairing",),
}
_UNGUARDED_DEFAULT = ("operator.read",)


def event_allowed(event: str, role: str, scopes: frozenset[str]) -> bool:
    """Whether a client with ``role``/``scopes`` may receive the broadcast ``event``.

    Events missing from the table need ``operator.read`` (OpenClaw drops them; we would rather not lose a
    new event silently)."""
    required = EVENT_SCOPE_GUARDS.get(event, _UNGUARDED_DEFAULT)
    if not required:
        return True
    if role != Role.OPERATOR:
        return False
    if "operator.admin" in scopes:
        return True
    if "operator.read" in required and "operator.write" in scopes:
        return True
    return any(scope in scopes for scope in required)


def hello_ok(
    accepted: ConnectAccepted,
    *,
    config: ProtocolConfig,
    server: Mapping[str, Any],
    methods: Sequence[str],
    events: Sequence[str],
    snapshot: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``hello-ok`` payload (every key OpenClaw's HelloOkSchema requires)."""
    return {
        "type": "hello-ok",
        "protocol": accepted.protocol,
        "server": dict(server),
        "features": {"methods": list(methods), "events": list(events)},
        "snapshot": dict(snapshot),
        "auth": {"method": accepted.auth_method, "role": accepted.role, "scopes": list(accepted.scopes)},
        "policy": config.policy(),
    }


# ----------------------------------------------------------------------------------------- connection


class ServerConnection:
    """Protocol state of one gateway WebSocket (server side)."""

    def __init__(self, config: ProtocolConfig, *, conn_id: str = "") -> None:
        self.config = config
        self.conn_id = conn_id
        self.state = ConnectionState.AWAIT_CONNECT
        self.role: str = Role.OPERATOR
        self.scopes: frozenset[str] = frozenset()
        self.params: ConnectParams | None = None
        self._seq = 0
        self._bucket = TokenBucket(rate=config.rate_limit_per_s, burst=max(1, config.rate_limit_burst))

    # ---- incoming

    def receive_bytes(self, data: bytes, now: float) -> list[Event]:
        """A binary frame: OpenClaw decodes it as UTF-8 text, so do we."""
        if self.state is ConnectionState.CLOSED:
            return []
        self._check_size(len(data))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise self._bad_frame("invalid request frame: not UTF-8 text") from None
        return self.receive_text(text, now)

    def receive_text(self, text: str, now: float) -> list[Event]:
        """Feed one complete text frame. Raises RemoteProtocolError (see module rules)."""
        if self.state is ConnectionState.CLOSED:
            return []
        self._check_size(_utf8_len(text, self._limit()))
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            raise self._bad_frame("invalid request frame: not JSON") from None
        if self.state is ConnectionState.AWAIT_CONNECT:
            return [self._receive_connect(obj)]
        return [self._receive_request(obj, now)]

    def _limit(self) -> int:
        if self.state is ConnectionState.AWAIT_CONNECT:
            return self.config.preauth_max_bytes
        return self.config.max_payload_bytes

    def _check_size(self, size: int) -> None:
        limit = self._limit()
        if size > limit:
            raise RemoteProtocolError(
                BadFrame(
                    "max payload size exceeded",
                    details={"code": str(DetailCode.INVALID_FRAME), "bytes": size, "limitBytes": limit},
                ),
                close_code=CloseCode.MESSAGE_TOO_BIG,
            )

    def _bad_frame(self, message: str, *, details: dict[str, Any] | None = None) -> RemoteProtocolError:
        """A frame that is not a request: before connect close unanswered, after connect answer ``invalid``."""
        error = BadFrame(message, details=details or {"code": str(DetailCode.INVALID_FRAME)})
        if self.state is ConnectionState.AWAIT_CONNECT:
            return self._fail_handshake(BadFrame("invalid request frame", details=error.details), None)
        return RemoteProtocolError(error, request_id=INVALID_ID)

    def _fail_handshake(
        self, error: ApplianceError, request_id: str | None, close_code: int = CloseCode.POLICY_VIOLATION
    ) -> RemoteProtocolError:
        self.state = ConnectionState.CLOSED
        return RemoteProtocolError(error, request_id=request_id, close_code=close_code)

    def _receive_connect(self, obj: object) -> ConnectAccepted:
        try:
            frame = parse_request(obj)
        except ValidationFailed as exc:
            raise self._fail_handshake(BadFrame("invalid request frame", details=exc.details), None) from None
        if frame.method != "connect":
            raise self._fail_handshake(
                InvalidRequest("invalid handshake: first request must be connect"), frame.id
            )
        try:
            params = parse_connect_params(frame.params)
        except ValidationFailed as exc:
            raise self._fail_handshake(exc, frame.id) from None

        role = params.role
        if role not in (Role.OPERATOR, Role.NODE):
            raise self._fail_handshake(InvalidRequest("invalid role"), frame.id)
        lowest = MIN_NODE_PROTOCOL if role == Role.NODE else MIN_CLIENT_PROTOCOL
        protocol = min(params.max_protocol, PROTOCOL_VERSION)
        if (
            params.min_protocol > PROTOCOL_VERSION
            or params.max_protocol < lowest
            or protocol < params.min_protocol
        ):
            raise self._fail_handshake(
                InvalidRequest(
                    "protocol mismatch",
                    details={"code": str(DetailCode.PROTOCOL_MISMATCH), "expectedProtocol": PROTOCOL_VERSION},
                ),
                frame.id,
                CloseCode.PROTOCOL_ERROR,
            )

        auth_method = self._authenticate(params, frame)
        self.state = ConnectionState.OPEN
        self.role = role
        self.scopes = frozenset(params.scopes)
        self.params = params
        return ConnectAccepted(
            request_id=frame.id,
            params=params,
            role=role,
            scopes=tuple(dict.fromkeys(params.scopes)),
            protocol=protocol,
            auth_method=auth_method,
        )

    def _authenticate(self, params: ConnectParams, frame: RequestFrame) -> str:
        """Return the auth method name, or raise the handshake failure."""
        if self.config.auth_mode == "none":
            return "none"
        expected = self.config.token
        provided = params.auth.token
        if not expected:
            reason = "token_missing_config"
        elif not provided:
            reason = "token_missing"
        elif tokens_match(provided, expected):
            return "token"
        else:
            reason = "token_mismatch"
        raise self._fail_handshake(auth_failure(reason), frame.id)

    def _receive_request(self, obj: object, now: float) -> RequestReceived:
        try:
            frame = parse_request(obj)
        except ValidationFailed as exc:
            raw_id = obj.get("id") if isinstance(obj, dict) else None
            req_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= 128 else INVALID_ID
            raise RemoteProtocolError(BadFrame(exc.message, details=exc.details), request_id=req_id) from None
        if frame.method == "connect":
            raise RemoteProtocolError(
                InvalidRequest("connect is only valid as the first request"), request_id=frame.id
            )
        wait_s = self._bucket.take(now)
        if wait_s > 0:
            retry_after_ms = max(1, math.ceil(wait_s * 1000))
            raise RemoteProtocolError(
                Unavailable(
                    "rate limit exceeded",
                    details={
                        "code": str(DetailCode.RATE_LIMITED),
                        "limitPerSecond": self.config.rate_limit_per_s,
                        "burst": self.config.rate_limit_burst,
                    },
                    retry_after_ms=retry_after_ms,
                ),
                request_id=frame.id,
            )
        return RequestReceived(frame.id, frame.method, frame.params, frame.traceparent)

    # ---- outgoing

    def challenge_frame(self, nonce: str, ts: int) -> str:
        """The ``connect.challenge`` event sent on open (no ``seq``, as observed)."""
        return dumps(
            {"type": "event", "event": GatewayEvent.CONNECT_CHALLENGE, "payload": {"nonce": nonce, "ts": ts}}
        )

    def response_frame(self, request_id: str, payload: Any) -> str:
        """``{"type":"res","id":…,"ok":true,"payload":…}``. Raises TypeError/ValueError for non-JSON
        payloads (a handler bug) before anything is counted."""
        return dumps({"type": "res", "id": request_id, "ok": True, "payload": payload})

    def error_frame(self, request_id: str, error: ApplianceError, *, payload: Any = None) -> str:
        frame: dict[str, Any] = {"type": "res", "id": request_id, "ok": False}
        if payload is not None:
            frame["payload"] = payload
        frame["error"] = error.to_wire()
        return dumps(frame)

    def event_frame(self, event: str, payload: Any, *, state_version: Mapping[str, int] | None = None) -> str:
        """An event with the next ``seq`` of this connection."""
        return self.event_frame_json(
            dumps(event), dumps(payload), None if state_version is None else dumps(dict(state_version))
        )

    def event_frame_json(self, event_json: str, payload_json: str, state_version_json: str | None) -> str:
        """:meth:`event_frame` from parts already serialised once for every recipient of a broadcast."""
        self._seq += 1
        tail = f',"stateVersion":{state_version_json}' if state_version_json is not None else ""
        return f'{{"type":"event","event":{event_json},"payload":{payload_json},"seq":{self._seq}{tail}}}'

    def skip_seq(self) -> None:
        """An event was dropped for this (slow) client: leave a gap so it can tell."""
        self._seq += 1

    @property
    def seq(self) -> int:
        return self._seq

    def wants_event(self, event: str) -> bool:
        return self.state is ConnectionState.OPEN and event_allowed(event, self.role, self.scopes)

    def close(self) -> None:
        self.state = ConnectionState.CLOSED


def _utf8_len(text: str, limit: int) -> int:
    """UTF-8 length of ``text``; cheap when it is clearly under ``limit`` (at most 4 bytes a char)."""
    if len(text) * 4 <= limit:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))
