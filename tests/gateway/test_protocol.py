"""Sans-IO tests of the gateway protocol core: no sockets, no trio, time passed in."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import ErrorCode, RemoteProtocolError
from appliance.gateway.protocol import (
    INVALID_ID,
    CloseCode,
    ConnectAccepted,
    ConnectionState,
    ProtocolConfig,
    RequestReceived,
    ServerConnection,
    event_allowed,
    hello_ok,
    tokens_match,
    truncate_close_reason,
)
from appliance.gateway.ratelimit import TokenBucket

TOKEN = "testtoken123"
BAD_TOKEN_MESSAGE = (
    "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)"
)


def connect_params(token: str | None = TOKEN, **overrides: Any) -> dict[str, Any]:
    """The exact ``connect`` params the real ``openclaw gateway call health`` sends (spec §1.3)."""
    params: dict[str, Any] = {
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {
            "id": "cli",
            "version": "2026.9.6",
            "platform": "linux",
            "deviceFamily": "Linux",
            "mode": "cli",
            "instanceId": "af08c0de-0000-4000-8000-000000000001",
        },
        "caps": [],
        "role": "operator",
        "scopes": ["operator.read"],
    }
    if token is not None:
        params["auth"] = {"token": token}
    params.update(overrides)
    return params


def req(req_id: str, method: str, params: Any = None, **extra: Any) -> str:
    frame: dict[str, Any] = {"type": "req", "id": req_id, "method": method, **extra}
    if params is not None:
        frame["params"] = params
    return json.dumps(frame, ensure_ascii=False)


@attrs.define
class Pair:
    """Drives one server connection the way a client would (h11's test ``Pair`` idea)."""

    conn: ServerConnection
    now: float = 1000.0

    @classmethod
    def new(cls, **config: Any) -> Pair:
        base: dict[str, Any] = {"token": TOKEN, "rate_limit_per_s": 10.0, "rate_limit_burst": 5}
        base.update(config)
        return cls(ServerConnection(ProtocolConfig(**base), conn_id="c1"))

    def send(self, text: str) -> list[Any]:
        return self.conn.receive_text(text, self.now)

    def fail(self, text: str) -> RemoteProtocolError:
        with pytest.raises(RemoteProtocolError) as info:
            self.conn.receive_text(text, self.now)
        return info.value

    def connect(self, **overrides: Any) -> ConnectAccepted:
        (event,) = self.send(req("1:c1cb5d4b", "connect", connect_params(**overrides)))
        assert isinstance(event, ConnectAccepted)
        return event

    def wire(self, err: RemoteProtocolError) -> dict[str, Any]:
        assert err.request_id is not None
        frame: dict[str, Any] = json.loads(self.conn.error_frame(err.request_id, err.reply))
        return frame


# ------------------------------------------------------------------------------------------------ handshake


def test_challenge_is_an_event_with_nonce_and_ts_and_no_seq() -> None:
    pair = Pair.new()
    frame = json.loads(pair.conn.challenge_frame("d9e34204-nonce", 1795420774708))
    assert frame == {
        "type": "event",
        "event": "connect.challenge",
        "payload": {"nonce": "d9e34204-nonce", "ts": 1795420774708},
    }


def test_connect_with_the_cli_frame_is_accepted_with_the_scopes_asked_for() -> None:
    pair = Pair.new()
    accepted = pair.connect()
    assert accepted.request_id == "1:c1cb5d4b"
    assert accepted.role == "operator"
    assert accepted.scopes == ("operator.read",)
    assert accepted.protocol == 4
    assert accepted.auth_method == "token"
    assert accepted.params.client.id == "cli"
    assert pair.conn.state is ConnectionState.OPEN
    assert pair.conn.scopes == frozenset({"operator.read"})


def test_hello_ok_has_every_required_key_and_the_policy() -> None:
    pair = Pair.new(max_payload_bytes=1_000_000, max_buffered_bytes=2_000_000, tick_interval_ms=30_000)
    accepted = pair.connect(scopes=["operator.admin", "operator.read", "operator.admin"])
    payload = hello_ok(
        accepted,
        config=pair.conn.config,
        server={"version": "0.1.0", "connId": "c1"},
        methods=["health"],
        events=["tick"],
        snapshot={"presence": [], "health": {}, "stateVersion": {"presence": 1, "health": 1}, "uptimeMs": 5},
    )
    assert payload["type"] == "hello-ok"
    assert payload["protocol"] == 4
    assert set(payload) >= {"server", "features", "snapshot", "auth", "policy"}
    assert payload["features"] == {"methods": ["health"], "events": ["tick"]}
    assert payload["auth"] == {
        "method": "token",
        "role": "operator",
        "scopes": ["operator.admin", "operator.read"],
    }
    assert payload["policy"] == {
        "maxPayload": 1_000_000,
        "maxBufferedBytes": 2_000_000,
        "tickIntervalMs": 30_000,
        "attachments": {"maxBytes": 553_392, "maxImageBytes": 553_392},
    }
    real = ProtocolConfig(max_payload_bytes=26_214_400).policy()["attachments"]
    assert real == {"maxBytes": 19_464_192, "maxImageBytes": 6_291_456}  # the real gateway's numbers
    text = pair.conn.response_frame(accepted.request_id, payload)
    assert json.loads(text)["payload"] == payload
    assert text.startswith('{"type":"res","id":"1:c1cb5d4b","ok":true,"payload":')


def test_bad_token_answers_the_real_gateways_error_and_closes_1008() -> None:
    pair = Pair.new()
    err = pair.fail(req("1:x", "connect", connect_params(token="WRONG")))
    assert err.close_code == CloseCode.POLICY_VIOLATION
    assert int(CloseCode.POLICY_VIOLATION) == 1008
    assert err.request_id == "1:x"
    assert pair.wire(err) == {
        "type": "res",
        "id": "1:x",
        "ok": False,
        "error": {
            "code": "INVALID_REQUEST",
            "message": BAD_TOKEN_MESSAGE,
            "details": {
                "code": "AUTH_TOKEN_MISMATCH",
                "authReason": "token_mismatch",
                "canRetryWithDeviceToken": False,
                "recommendedNextStep": "update_auth_credentials",
            },
        },
    }
    assert pair.conn.state is ConnectionState.CLOSED
    assert pair.send(req("2:x", "health")) == []  # nothing more is processed


@pytest.mark.parametrize("auth", [None, {}, {"token": ""}, {"token": None}, {"password": "pw"}])
def test_missing_token_is_auth_token_missing(auth: dict[str, Any] | None) -> None:
    pair = Pair.new()
    params = connect_params(token=None)
    if auth is not None:
        params["auth"] = auth
    err = pair.fail(req("1:x", "connect", params))
    assert err.close_code == 1008
    wire = pair.wire(err)["error"]
    assert wire["code"] == "INVALID_REQUEST"
    assert wire["message"].startswith("unauthorized: gateway token missing")
    assert wire["details"]["code"] == "AUTH_TOKEN_MISSING"
    assert wire["details"]["authReason"] == "token_missing"


def test_token_mode_without_a_configured_token_refuses_everyone() -> None:
    pair = Pair.new(token="")
    err = pair.fail(req("1:x", "connect", connect_params(token="")))
    assert pair.wire(err)["error"]["details"]["code"] == "AUTH_TOKEN_NOT_CONFIGURED"


def test_a_token_differing_in_the_last_character_or_length_is_rejected() -> None:
    for wrong in (TOKEN[:-1] + "4", TOKEN + "x", TOKEN[:-1], TOKEN.upper()):
        pair = Pair.new()
        err = pair.fail(req("1:x", "connect", connect_params(token=wrong)))
        assert pair.wire(err)["error"]["details"]["code"] == "AUTH_TOKEN_MISMATCH"


def test_auth_mode_none_accepts_a_connect_without_credentials() -> None:
    pair = Pair.new(auth_mode="none", token="")
    accepted = pair.connect(token=None)
    assert accepted.auth_method == "none"


def test_tokens_match_is_exact() -> None:
    assert tokens_match("abc", "abc")
    assert not tokens_match("abc", "abd")
    assert not tokens_match("", "abc")
    assert tokens_match("ünïcödé\udc80", "ünïcödé\udc80")


def test_first_request_other_than_connect_is_answered_then_closed() -> None:
    pair = Pair.new()
    err = pair.fail(req("1:x", "health"))
    assert err.close_code == 1008
    assert pair.wire(err)["error"] == {
        "code": "INVALID_REQUEST",
        "message": "invalid handshake: first request must be connect",
    }


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "",
        "[1,2,3]",
        '"connect"',
        "null",
        '{"type":"event","event":"x"}',
        '{"type":"req","method":"connect"}',
        '{"type":"req","id":"","method":"connect"}',
        '{"type":"req","id":7,"method":"connect"}',
        "[" * 50_000,
    ],
)
def test_malformed_first_frame_closes_1008_without_an_answer(text: str) -> None:
    pair = Pair.new()
    err = pair.fail(text)
    assert err.request_id is None
    assert err.close_code == 1008
    assert err.reply.message == "invalid request frame"
    assert pair.conn.state is ConnectionState.CLOSED


def test_oversized_frame_before_connect_closes_1009() -> None:
    pair = Pair.new(preauth_max_bytes=1024)
    err = pair.fail(req("1:x", "connect", connect_params(pad="x" * 2000)))
    assert err.close_code == CloseCode.MESSAGE_TOO_BIG
    assert int(CloseCode.MESSAGE_TOO_BIG) == 1009
    assert err.request_id is None
    assert err.reply.details is not None
    assert err.reply.details["limitBytes"] == 1024


def test_preauth_size_counts_utf8_bytes_not_characters() -> None:
    pair = Pair.new(preauth_max_bytes=1024)
    text = req("1:x", "connect", connect_params(pad="é" * 500))  # < 1024 chars, > 1024 bytes
    assert len(text) < 1024 < len(text.encode())
    assert pair.fail(text).close_code == 1009


def test_after_connect_the_larger_payload_limit_applies_and_oversize_closes_1009() -> None:
    pair = Pair.new(preauth_max_bytes=1024, max_payload_bytes=8192)
    pair.connect()
    (event,) = pair.send(req("2:x", "health", {"pad": "x" * 4000}))
    assert isinstance(event, RequestReceived)
    err = pair.fail(req("3:x", "health", {"pad": "x" * 9000}))
    assert err.close_code == 1009


def test_invalid_connect_params_are_answered_with_every_problem() -> None:
    pair = Pair.new()
    params = connect_params()
    del params["client"]["version"]
    params["scopes"] = ["operator.read", 5]
    params["minProtocol"] = "4"
    err = pair.fail(req("1:x", "connect", params))
    assert err.close_code == 1008
    error = pair.wire(err)["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert error["message"].startswith("invalid connect params: ")
    assert "at /client: must have required property 'version'" in error["message"]
    paths = {e["path"] for e in error["details"]["errors"]}
    assert paths == {"/client", "/scopes/1", "/minProtocol"}


@pytest.mark.parametrize(("lo", "hi"), [(3, 3), (5, 6), (1, 2)])
def test_protocol_mismatch_closes_1002_with_expected_protocol(lo: int, hi: int) -> None:
    pair = Pair.new()
    err = pair.fail(req("1:x", "connect", connect_params(minProtocol=lo, maxProtocol=hi)))
    assert err.close_code == CloseCode.PROTOCOL_ERROR
    assert int(CloseCode.PROTOCOL_ERROR) == 1002
    error = pair.wire(err)["error"]
    assert error["message"] == "protocol mismatch"
    assert error["details"] == {"code": "PROTOCOL_MISMATCH", "expectedProtocol": 4}


def test_a_wider_protocol_range_negotiates_4() -> None:
    assert Pair.new().connect(minProtocol=3, maxProtocol=9).protocol == 4


def test_nodes_may_use_protocol_3() -> None:
    accepted = Pair.new().connect(minProtocol=3, maxProtocol=3, role="node")
    assert (accepted.protocol, accepted.role) == (3, "node")


def test_unknown_role_is_refused() -> None:
    pair = Pair.new()
    err = pair.fail(req("1:x", "connect", connect_params(role="superuser")))
    assert pair.wire(err)["error"]["message"] == "invalid role"
    assert err.close_code == 1008


# ------------------------------------------------------------------------------------------------ requests


def test_request_without_params_gets_an_empty_dict() -> None:
    pair = Pair.new()
    pair.connect()
    (event,) = pair.send(req("2:ef96caac", "health"))
    assert event == RequestReceived("2:ef96caac", "health", {}, None)
    (event,) = pair.send('{"type":"req","id":"3:x","method":"health","params":null}')
    assert event.params == {}


def test_request_keeps_params_and_traceparent() -> None:
    pair = Pair.new()
    pair.connect()
    (event,) = pair.send(req("2:x", "sessions.preview", {"keys": ["a"]}, traceparent="00-abc-def-01"))
    assert event == RequestReceived("2:x", "sessions.preview", {"keys": ["a"]}, "00-abc-def-01")


@pytest.mark.parametrize("params", [[], "x", 5, True])
def test_non_object_params_are_answered_with_the_request_id_and_the_socket_stays_open(params: Any) -> None:
    pair = Pair.new()
    pair.connect()
    err = pair.fail(json.dumps({"type": "req", "id": "2:x", "method": "health", "params": params}))
    assert err.request_id == "2:x"
    assert err.close_code is None
    error = pair.wire(err)["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert error["message"] == "invalid request frame: at /params: must be object"
    assert error["details"]["errors"] == [{"path": "/params", "message": "must be object"}]
    assert pair.conn.state is ConnectionState.OPEN


@pytest.mark.parametrize(
    ("text", "answered_id"),
    [
        ("{not json", INVALID_ID),
        ("[]", INVALID_ID),
        ('{"type":"req","method":"health"}', INVALID_ID),
        ('{"type":"req","id":"","method":"health"}', INVALID_ID),
        ('{"type":"req","id":' + json.dumps("x" * 200) + ',"method":"health"}', INVALID_ID),
        ('{"type":"res","id":"9","method":"health"}', "9"),
        ('{"type":"req","id":"9","method":""}', "9"),
        ('{"type":"req","id":"9","method":42}', "9"),
    ],
)
def test_malformed_frames_after_connect_are_answered_not_fatal(text: str, answered_id: str) -> None:
    pair = Pair.new()
    pair.connect()
    err = pair.fail(text)
    assert err.close_code is None
    assert err.request_id == answered_id
    assert err.reply.code == ErrorCode.INVALID_REQUEST
    assert err.reply.message.startswith("invalid request frame")
    assert pair.conn.state is ConnectionState.OPEN
    (event,) = pair.send(req("10:ok", "health"))  # still usable
    assert event.method == "health"


def test_a_second_connect_is_refused_without_closing() -> None:
    pair = Pair.new()
    pair.connect()
    err = pair.fail(req("2:x", "connect", connect_params()))
    assert err.close_code is None
    assert err.reply.message == "connect is only valid as the first request"


def test_binary_frames_are_decoded_as_utf8() -> None:
    pair = Pair.new()
    (accepted,) = pair.conn.receive_bytes(req("1:x", "connect", connect_params()).encode(), 0.0)
    assert isinstance(accepted, ConnectAccepted)
    with pytest.raises(RemoteProtocolError) as info:
        pair.conn.receive_bytes(b"\xff\xfe", 0.0)
    assert info.value.request_id == INVALID_ID


def test_rate_limit_answers_unavailable_retryable_with_retry_after() -> None:
    pair = Pair.new(rate_limit_per_s=10.0, rate_limit_burst=5)
    pair.connect()
    for i in range(5):
        pair.send(req(f"r{i}", "health"))
    err = pair.fail(req("r5", "health"))
    assert err.close_code is None
    assert err.request_id == "r5"
    error = pair.wire(err)["error"]
    assert error["code"] == "UNAVAILABLE"
    assert error["retryable"] is True
    assert error["retryAfterMs"] == 100
    assert error["details"]["code"] == "RATE_LIMITED"
    pair.now += 0.1
    (event,) = pair.send(req("r6", "health"))
    assert event.request_id == "r6"


def test_connect_itself_is_not_rate_limited() -> None:
    pair = Pair.new(rate_limit_per_s=0.1, rate_limit_burst=1)
    pair.connect()
    pair.send(req("a", "health"))
    assert pair.fail(req("b", "health")).reply.code == ErrorCode.UNAVAILABLE


def test_token_bucket_refills_up_to_burst_and_ignores_clock_going_back() -> None:
    bucket = TokenBucket(rate=2.0, burst=2)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(10.0) == 0.0
    assert bucket.take(10.0) == pytest.approx(0.5)
    assert bucket.take(9.0) == pytest.approx(0.5)  # backwards: nothing refilled, nothing spent
    assert bucket.take(100.0) == 0.0
    assert bucket.tokens == pytest.approx(1.0)  # refilled to burst (2), minus one


# ------------------------------------------------------------------------------------------------ outgoing


def test_events_are_numbered_per_connection_and_skip_leaves_a_gap() -> None:
    pair = Pair.new()
    pair.connect()
    first = json.loads(pair.conn.event_frame("tick", {"ts": 1}))
    second = json.loads(
        pair.conn.event_frame("health", {"ok": True}, state_version={"presence": 1, "health": 3})
    )
    pair.conn.skip_seq()
    fourth = json.loads(pair.conn.event_frame_json('"tick"', '{"ts":2}', None))
    assert first == {"type": "event", "event": "tick", "payload": {"ts": 1}, "seq": 1}
    assert second == {
        "type": "event",
        "event": "health",
        "payload": {"ok": True},
        "seq": 2,
        "stateVersion": {"presence": 1, "health": 3},
    }
    assert fourth["seq"] == 4
    other = Pair.new()
    assert json.loads(other.conn.event_frame("tick", {}))["seq"] == 1


def test_error_frame_matches_the_real_unknown_method_answer() -> None:
    from appliance.errors import UnknownMethod

    pair = Pair.new()
    text = pair.conn.error_frame("3:x", UnknownMethod("no.such.method"))
    assert json.loads(text) == {
        "type": "res",
        "id": "3:x",
        "ok": False,
        "error": {"code": "INVALID_REQUEST", "message": "unknown method: no.such.method"},
    }


def test_response_payload_must_be_json() -> None:
    pair = Pair.new()
    with pytest.raises(ValueError, match="Out of range float"):
        pair.conn.response_frame("1", {"x": float("nan")})
    assert json.loads(pair.conn.response_frame("1", None)) == {
        "type": "res",
        "id": "1",
        "ok": True,
        "payload": None,
    }


def test_event_scope_guards() -> None:
    read = frozenset({"operator.read"})
    assert event_allowed("tick", "operator", frozenset())
    assert event_allowed("tick", "node", frozenset())
    assert event_allowed("chat", "operator", read)
    assert event_allowed("chat", "operator", frozenset({"operator.write"}))
    assert event_allowed("chat", "operator", frozenset({"operator.admin"}))
    assert not event_allowed("chat", "operator", frozenset({"operator.pairing"}))
    assert not event_allowed("chat", "node", read)
    assert event_allowed("device.pair.requested", "operator", frozenset({"operator.pairing"}))
    assert not event_allowed("device.pair.requested", "operator", read)
    assert event_allowed("some.new.event", "operator", read)
    assert not event_allowed("some.new.event", "operator", frozenset())
    pair = Pair.new()
    assert not pair.conn.wants_event("tick")  # not before connect
    pair.connect(scopes=[])
    assert pair.conn.wants_event("tick")
    assert not pair.conn.wants_event("chat")


def test_close_reason_is_cut_to_123_bytes_on_a_character_boundary() -> None:
    assert truncate_close_reason("short") == "short"
    cut = truncate_close_reason("é" * 100)
    assert len(cut.encode()) <= 123
    assert cut == "é" * 61
    assert len(truncate_close_reason(BAD_TOKEN_MESSAGE).encode()) <= 123


# ------------------------------------------------------------------------------------------------ fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
frame_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["req", "res", "event", 1, None]),
        "id": st.one_of(st.text(max_size=10), st.integers(), st.none()),
        "method": st.one_of(st.sampled_from(["connect", "health", ""]), st.text(max_size=10), st.integers()),
        "params": json_values,
        "traceparent": json_values,
    },
)


def _feed(pair: Pair, data: str | bytes) -> None:
    try:
        events = (
            pair.conn.receive_text(data, pair.now)
            if isinstance(data, str)
            else pair.conn.receive_bytes(data, pair.now)
        )
    except RemoteProtocolError as err:
        wire = err.reply.to_wire()
        json.dumps(wire, allow_nan=False)  # always encodable
        assert wire["code"] in {"INVALID_REQUEST", "UNAVAILABLE"}
        if err.request_id is not None:
            json.loads(pair.conn.error_frame(err.request_id, err.reply))
        return
    for event in events:
        assert isinstance(event, ConnectAccepted | RequestReceived)
        if isinstance(event, RequestReceived):
            assert isinstance(event.params, dict)
            assert event.request_id
            assert event.method


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.text(max_size=200), st.binary(max_size=200)), connected=st.booleans())
def test_fuzz_arbitrary_text_and_bytes_raise_only_protocol_errors(data: str | bytes, connected: bool) -> None:
    pair = Pair.new(preauth_max_bytes=1024, max_payload_bytes=160)
    if connected:
        pair.connect()
    _feed(pair, data)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(json_values, frame_like), connected=st.booleans())
def test_fuzz_arbitrary_json_raises_only_protocol_errors(value: Any, connected: bool) -> None:
    pair = Pair.new()
    if connected:
        pair.connect()
    _feed(pair, json.dumps(value))


@settings(max_examples=200, deadline=None)
@given(
    params=st.dictionaries(
        st.sampled_from(["minProtocol", "maxProtocol", "client", "role", "scopes", "caps", "auth", "device"]),
        json_values,
    )
)
def test_fuzz_connect_params_raise_only_protocol_errors(params: dict[str, Any]) -> None:
    pair = Pair.new()
    _feed(pair, req("1:x", "connect", params))


@settings(max_examples=100, deadline=None)
@given(frames=st.lists(st.one_of(st.text(max_size=50), frame_like.map(json.dumps)), max_size=8))
def test_fuzz_sequences_after_connect_never_break_the_connection_without_a_close_code(
    frames: list[str],
) -> None:
    pair = Pair.new()
    pair.connect()
    for text in frames:
        close_code = None
        try:
            pair.conn.receive_text(text, pair.now)
        except RemoteProtocolError as err:
            close_code = err.close_code
        assert close_code is None  # after connect only oversize frames close, and these are small
    assert pair.conn.state is ConnectionState.OPEN
