"""Gateway protocol v4 frames and the ``connect`` params, as OpenClaw 2026.9.6 puts them on the wire (sans-IO).

Rules:
- frames are JSON objects in WebSocket text frames: ``req`` (client -> server), ``res`` and ``event``
  (server -> client); see ``shared/specs/openclaw-gateway.md`` §1.2;
- decoding is strict on types and lenient on extra keys, as OpenClaw's frame guards are: a request needs
  ``type:"req"``, a non-empty string ``id`` and ``method``; ``params`` may be missing (= ``{}``);
- a decoding failure raises :class:`~appliance.errors.ValidationFailed` whose message reads like
  OpenClaw's (AJV style: ``at /client: must have required property 'version'``) and whose ``details``
  list every offending field as ``{"path", "message"}``;
- encoders return plain dicts in OpenClaw's key order (``type, id, ok, payload, error`` and
  ``type, event, payload, seq, stateVersion``) and omit absent optional fields;
- nothing here does I/O, reads a clock or imports trio.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from appliance.errors import ValidationFailed

__all__ = [
    "CLIENT_IDS",
    "CLIENT_MODES",
    "MAX_ID_CHARS",
    "MAX_METHOD_CHARS",
    "MAX_TRACEPARENT_CHARS",
    "MIN_CLIENT_PROTOCOL",
    "MIN_NODE_PROTOCOL",
    "PROTOCOL_VERSION",
    "ClientInfo",
    "ConnectAuth",
    "ConnectParams",
    "DetailCode",
    "EventFrame",
    "FieldProblem",
    "FrameType",
    "GatewayEvent",
    "RequestFrame",
    "Role",
    "connect_params_to_wire",
    "event_to_wire",
    "format_problems",
    "parse_connect_params",
    "parse_request",
    "request_to_wire",
    "response_to_wire",
]

#: the protocol version this gateway speaks (OpenClaw's PROTOCOL_VERSION)
PROTOCOL_VERSION = 4
#: the oldest version an operator client may ask for (MIN_CLIENT_PROTOCOL_VERSION)
MIN_CLIENT_PROTOCOL = 4
#: nodes and probes may lag one version behind (N-1)
MIN_NODE_PROTOCOL = 3

MAX_ID_CHARS = 128
MAX_METHOD_CHARS = 128
MAX_TRACEPARENT_CHARS = 128
_MAX_CLIENT_FIELD_CHARS = 256
_MAX_SCOPES = 64


class FrameType(enum.StrEnum):
    REQ = "req"
    RES = "res"
    EVENT = "event"


class Role(enum.StrEnum):
    OPERATOR = "operator"
    NODE = "node"


class GatewayEvent(enum.StrEnum):
    """Events this gateway emits (advertised in ``hello-ok.features.events``)."""

    CONNECT_CHALLENGE = "connect.challenge"
    TICK = "tick"
    PRESENCE = "presence"
    HEALTH = "health"
    HEARTBEAT = "heartbeat"
    SHUTDOWN = "shutdown"
    AGENT = "agent"
    CHAT = "chat"
    SESSION_MESSAGE = "session.message"
    SESSION_TOOL = "session.tool"
    SESSIONS_CHANGED = "sessions.changed"
    CRON = "cron"
    TASK = "task"


class DetailCode(enum.StrEnum):
    """``error.details.code`` values: the finer reason under the closed top-level code."""

    AUTH_TOKEN_MISMATCH = "AUTH_TOKEN_MISMATCH"
    AUTH_TOKEN_MISSING = "AUTH_TOKEN_MISSING"
    AUTH_TOKEN_NOT_CONFIGURED = "AUTH_TOKEN_NOT_CONFIGURED"
    PROTOCOL_MISMATCH = "PROTOCOL_MISMATCH"
    MISSING_SCOPE = "MISSING_SCOPE"
    INVALID_PARAMS = "INVALID_PARAMS"
    INVALID_FRAME = "INVALID_FRAME"
    RATE_LIMITED = "RATE_LIMITED"
    SHUTTING_DOWN = "SHUTTING_DOWN"


#: ``client.id`` values OpenClaw's ConnectParams schema names. Not enforced: a future client id must not
#: lock a client out of a gateway that does not care who it is.
CLIENT_IDS: tuple[str, ...] = (
    "openclaw-android", "openclaw-browser-copilot", "cli", "openclaw-control-ui", "fingerprint",
    "gateway-client", "openclaw-ios", "openclaw-linux", "openclaw-macos", "node-host", "openclaw-probe",
    "test", "openclaw-tui", "openclaw-watchos", "webchat", "webchat-ui", "openclaw-worker",
)  # fmt: skip
#: ``client.mode`` values (same leniency as :data:`CLIENT_IDS`)
CLIENT_MODES: tuple[str, ...] = ("backend", "cli", "node", "probe", "test", "ui", "webchat", "worker")


@attrs.frozen
class FieldProblem:
    """One validation failure: a JSON pointer and an AJV-style message."""

    path: str
    message: str

    def to_wire(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


def format_problems(problems: list[FieldProblem]) -> str:
    """``at /client: must have required property 'version'; at /scopes/0: must be string``."""
    return "; ".join(f"at {p.path or 'root'}: {p.message}" for p in problems)


def _invalid(prefix: str, problems: list[FieldProblem]) -> ValidationFailed:
    return ValidationFailed(
        f"{prefix}: {format_problems(problems)}",
        details={"code": str(DetailCode.INVALID_PARAMS), "errors": [p.to_wire() for p in problems]},
    )


# --------------------------------------------------------------------------------------------- requests


@attrs.frozen
class RequestFrame:
    id: str
    method: str
    params: dict[str, Any] = attrs.field(factory=dict)
    traceparent: str | None = None


def parse_request(obj: object) -> RequestFrame:
    """Validate a decoded JSON value as a ``req`` frame.

    A missing or ``null`` ``params`` becomes ``{}``; any other non-object ``params`` is rejected (every
    gateway method takes an object). Raises ValidationFailed (message ``invalid request frame: …``).
    """
    if not isinstance(obj, dict):
        raise _invalid("invalid request frame", [FieldProblem("", "must be object")])
    problems: list[FieldProblem] = []
    if obj.get("type") != FrameType.REQ:
        problems.append(FieldProblem("/type", 'must be equal to constant "req"'))
    req_id = obj.get("id")
    if "id" not in obj:
        problems.append(FieldProblem("", "must have required property 'id'"))
    else:
        _check_text(problems, "/id", req_id, MAX_ID_CHARS)
    method = obj.get("method")
    if "method" not in obj:
        problems.append(FieldProblem("", "must have required property 'method'"))
    else:
        _check_text(problems, "/method", method, MAX_METHOD_CHARS)
    params = obj.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        problems.append(FieldProblem("/params", "must be object"))
    traceparent = obj.get("traceparent")
    if traceparent is not None:
        _check_text(problems, "/traceparent", traceparent, MAX_TRACEPARENT_CHARS)
    if problems:
        raise _invalid("invalid request frame", problems)
    assert isinstance(req_id, str)
    assert isinstance(method, str)
    assert isinstance(params, dict)
    return RequestFrame(req_id, method, params, traceparent if isinstance(traceparent, str) else None)


def request_to_wire(frame: RequestFrame) -> dict[str, Any]:
    wire: dict[str, Any] = {"type": "req", "id": frame.id, "method": frame.method, "params": frame.params}
    if frame.traceparent is not None:
        wire["traceparent"] = frame.traceparent
    return wire


def _check_text(problems: list[FieldProblem], path: str, value: object, max_chars: int) -> None:
    if not isinstance(value, str):
        problems.append(FieldProblem(path, "must be string"))
    elif not value:
        problems.append(FieldProblem(path, "must NOT have fewer than 1 characters"))
    elif len(value) > max_chars:
        problems.append(FieldProblem(path, f"must NOT have more than {max_chars} characters"))


# -------------------------------------------------------------------------------------- responses, events


def response_to_wire(
    req_id: str, *, ok: bool, payload: Any = None, error: Mapping[str, Any] | None = None, with_payload: bool
) -> dict[str, Any]:
    """A ``res`` frame; ``with_payload`` says whether ``payload`` is present (``null`` is a valid payload,
    as ``last-heartbeat`` answers)."""
    wire: dict[str, Any] = {"type": "res", "id": req_id, "ok": ok}
    if with_payload:
        wire["payload"] = payload
    if error is not None:
        wire["error"] = dict(error)
    return wire


@attrs.frozen
class EventFrame:
    event: str
    payload: Any = None
    seq: int | None = None
    state_version: Mapping[str, int] | None = None


def event_to_wire(frame: EventFrame) -> dict[str, Any]:
    wire: dict[str, Any] = {"type": "event", "event": frame.event, "payload": frame.payload}
    if frame.seq is not None:
        wire["seq"] = frame.seq
    if frame.state_version is not None:
        wire["stateVersion"] = dict(frame.state_version)
    return wire


# -------------------------------------------------------------------------------------------- connect


@attrs.frozen
class ClientInfo:
    id: str
    version: str
    platform: str
    mode: str
    display_name: str | None = None
    device_family: str | None = None
    model_identifier: str | None = None
    instance_id: str | None = None
    build_id: str | None = None
    time_zone: str | None = None

    def is_cli(self) -> bool:
        """OpenClaw's ``isGatewayCliClient``: short-lived CLI connects are kept out of presence."""
        return self.mode == "cli" or self.id == "cli"


@attrs.frozen
class ConnectAuth:
    token: str | None = None
    password: str | None = None
    device_token: str | None = None
    bootstrap_token: str | None = None


@attrs.frozen
class ConnectParams:
    min_protocol: int
    max_protocol: int
    client: ClientInfo
    role: str = Role.OPERATOR
    scopes: tuple[str, ...] = ()
    caps: tuple[str, ...] = ()
    auth: ConnectAuth = attrs.Factory(ConnectAuth)
    locale: str | None = None
    user_agent: str | None = None
    has_device: bool = False


_CLIENT_OPTIONAL = {
    "displayName": "display_name",
    "deviceFamily": "device_family",
    "modelIdentifier": "model_identifier",
    "instanceId": "instance_id",
    "buildId": "build_id",
    "timeZone": "time_zone",
}
_AUTH_FIELDS = {
    "token": "token",
    "password": "password",
    "deviceToken": "device_token",
    "bootstrapToken": "bootstrap_token",
}


def parse_connect_params(obj: object) -> ConnectParams:
    """Validate ``connect`` params (OpenClaw's ConnectParams schema, types only).

    Raises ValidationFailed with message ``invalid connect params: …``.
    """
    if not isinstance(obj, dict):
        raise _invalid("invalid connect params", [FieldProblem("", "must be object")])
    problems: list[FieldProblem] = []
    min_protocol = _int_field(problems, obj, "minProtocol", "")
    max_protocol = _int_field(problems, obj, "maxProtocol", "")

    client_raw = obj.get("client")
    client: ClientInfo | None = None
    if "client" not in obj:
        problems.append(FieldProblem("", "must have required property 'client'"))
    elif not isinstance(client_raw, dict):
        problems.append(FieldProblem("/client", "must be object"))
    else:
        client = _parse_client(problems, client_raw)

    role = obj.get("role", Role.OPERATOR)
    if role is None:
        role = Role.OPERATOR
    if not isinstance(role, str):
        problems.append(FieldProblem("/role", "must be string"))
    scopes = _string_list(problems, obj, "scopes")
    caps = _string_list(problems, obj, "caps")

    auth = ConnectAuth()
    auth_raw = obj.get("auth")
    if auth_raw is not None:
        if not isinstance(auth_raw, dict):
            problems.append(FieldProblem("/auth", "must be object"))
        else:
            values: dict[str, str | None] = {}
            for wire_name, attr_name in _AUTH_FIELDS.items():
                value = auth_raw.get(wire_name)
                if value is not None and not isinstance(value, str):
                    problems.append(FieldProblem(f"/auth/{wire_name}", "must be string"))
                    value = None
                values[attr_name] = value
            auth = ConnectAuth(**values)

    locale = _optional_text(problems, obj, "locale", "")
    user_agent = _optional_text(problems, obj, "userAgent", "")
    device = obj.get("device")
    if device is not None and not isinstance(device, dict):
        problems.append(FieldProblem("/device", "must be object"))

    if problems:
        raise _invalid("invalid connect params", problems)
    assert client is not None
    assert min_protocol is not None
    assert max_protocol is not None
    assert isinstance(role, str)
    return ConnectParams(
        min_protocol=min_protocol,
        max_protocol=max_protocol,
        client=client,
        role=role,
        scopes=scopes,
        caps=caps,
        auth=auth,
        locale=locale,
        user_agent=user_agent,
        has_device=isinstance(device, dict),
    )


def connect_params_to_wire(params: ConnectParams) -> dict[str, Any]:
    """The inverse of :func:`parse_connect_params` (used by tests and the loopback test client)."""
    client: dict[str, Any] = {
        "id": params.client.id,
        "version": params.client.version,
        "platform": params.client.platform,
        "mode": params.client.mode,
    }
    for wire_name, attr_name in _CLIENT_OPTIONAL.items():
        value = getattr(params.client, attr_name)
        if value is not None:
            client[wire_name] = value
    wire: dict[str, Any] = {
        "minProtocol": params.min_protocol,
        "maxProtocol": params.max_protocol,
        "client": client,
        "caps": list(params.caps),
        "role": params.role,
        "scopes": list(params.scopes),
    }
    auth = {
        w: getattr(params.auth, a) for w, a in _AUTH_FIELDS.items() if getattr(params.auth, a) is not None
    }
    if auth:
        wire["auth"] = auth
    if params.locale is not None:
        wire["locale"] = params.locale
    if params.user_agent is not None:
        wire["userAgent"] = params.user_agent
    return wire


def _parse_client(problems: list[FieldProblem], raw: dict[str, Any]) -> ClientInfo | None:
    start = len(problems)
    required: dict[str, str] = {}
    for name in ("id", "version", "platform", "mode"):
        if name not in raw:
            problems.append(FieldProblem("/client", f"must have required property '{name}'"))
            continue
        value = raw[name]
        _check_text(problems, f"/client/{name}", value, _MAX_CLIENT_FIELD_CHARS)
        if isinstance(value, str):
            required[name] = value
    optional: dict[str, str | None] = {}
    for wire_name, attr_name in _CLIENT_OPTIONAL.items():
        optional[attr_name] = _optional_text(problems, raw, wire_name, "/client")
    if len(problems) > start:
        return None
    return ClientInfo(
        id=required["id"],
        version=required["version"],
        platform=required["platform"],
        mode=required["mode"],
        **optional,
    )


def _int_field(problems: list[FieldProblem], obj: dict[str, Any], name: str, base: str) -> int | None:
    if name not in obj:
        problems.append(FieldProblem(base, f"must have required property '{name}'"))
        return None
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(FieldProblem(f"{base}/{name}", "must be integer"))
        return None
    if not 0 <= value <= 1_000_000:
        problems.append(FieldProblem(f"{base}/{name}", "must be >= 0 and <= 1000000"))
        return None
    return value


def _optional_text(problems: list[FieldProblem], obj: dict[str, Any], name: str, base: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(FieldProblem(f"{base}/{name}", "must be string"))
        return None
    if len(value) > _MAX_CLIENT_FIELD_CHARS:
        problems.append(
            FieldProblem(f"{base}/{name}", f"must NOT have more than {_MAX_CLIENT_FIELD_CHARS} characters")
        )
        return None
    return value


def _string_list(problems: list[FieldProblem], obj: dict[str, Any], name: str) -> tuple[str, ...]:
    value = obj.get(name)
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(FieldProblem(f"/{name}", "must be array"))
        return ()
    if len(value) > _MAX_SCOPES:
        problems.append(FieldProblem(f"/{name}", f"must NOT have more than {_MAX_SCOPES} items"))
        return ()
    out: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or len(item) > _MAX_CLIENT_FIELD_CHARS:
            problems.append(FieldProblem(f"/{name}/{index}", "must be string"))
        else:
            out.append(item)
    return tuple(out)
