"""Frame and connect-params models (appliance.models.frames): decode, encode, round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import ValidationFailed
from appliance.models.frames import (
    ClientInfo,
    ConnectAuth,
    ConnectParams,
    EventFrame,
    GatewayEvent,
    RequestFrame,
    connect_params_to_wire,
    event_to_wire,
    format_problems,
    parse_connect_params,
    parse_request,
    request_to_wire,
    response_to_wire,
)

CLI_CONNECT = {
    "minProtocol": 4,
    "maxProtocol": 4,
    "client": {
        "id": "cli",
        "version": "2026.9.6",
        "platform": "linux",
        "deviceFamily": "Linux",
        "mode": "cli",
        "instanceId": "af08",
    },
    "caps": [],
    "auth": {"token": "testtoken123"},
    "role": "operator",
    "scopes": ["operator.read"],
}
HEALTH_CONNECT_CLIENT = {
    "id": "gateway-client",
    "displayName": "gateway:health",
    "version": "2026.9.6",
    "platform": "linux",
    "mode": "backend",
}


def test_the_real_cli_connect_parses() -> None:
    params = parse_connect_params(CLI_CONNECT)
    assert params == ConnectParams(
        min_protocol=4,
        max_protocol=4,
        client=ClientInfo(
            id="cli",
            version="2026.9.6",
            platform="linux",
            mode="cli",
            device_family="Linux",
            instance_id="af08",
        ),
        role="operator",
        scopes=("operator.read",),
        caps=(),
        auth=ConnectAuth(token="testtoken123"),
    )
    assert params.client.is_cli()
    assert connect_params_to_wire(params) == CLI_CONNECT


def test_openclaw_health_connect_parses_and_is_not_a_cli_client() -> None:
    params = parse_connect_params({**CLI_CONNECT, "client": HEALTH_CONNECT_CLIENT})
    assert params.client.display_name == "gateway:health"
    assert not params.client.is_cli()


def test_connect_with_a_device_block_and_extra_keys_is_accepted() -> None:
    params = parse_connect_params(
        {**CLI_CONNECT, "device": {"id": "d"}, "permissions": {"x": True}, "locale": "en"}
    )
    assert params.has_device
    assert params.locale == "en"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"client": None}, "at /client: must be object"),
        ({"client": {"id": "cli"}}, "at /client: must have required property 'version'"),
        ({"minProtocol": 4.5}, "at /minProtocol: must be integer"),
        ({"minProtocol": True}, "at /minProtocol: must be integer"),
        ({"maxProtocol": -1}, "at /maxProtocol: must be >= 0 and <= 1000000"),
        ({"scopes": "operator.read"}, "at /scopes: must be array"),
        ({"scopes": [1]}, "at /scopes/0: must be string"),
        ({"auth": "tok"}, "at /auth: must be object"),
        ({"auth": {"token": 5}}, "at /auth/token: must be string"),
        ({"role": 3}, "at /role: must be string"),
        ({"client": {**HEALTH_CONNECT_CLIENT, "displayName": 9}}, "at /client/displayName: must be string"),
        (
            {"client": {**HEALTH_CONNECT_CLIENT, "id": ""}},
            "at /client/id: must NOT have fewer than 1 characters",
        ),
    ],
)
def test_bad_connect_params_say_where_and_why(change: dict[str, Any], message: str) -> None:
    raw = {**CLI_CONNECT, **change}
    with pytest.raises(ValidationFailed) as info:
        parse_connect_params(raw)
    assert info.value.message.startswith("invalid connect params: ")
    assert message in info.value.message
    assert info.value.details is not None
    assert info.value.details["code"] == "INVALID_PARAMS"


def test_missing_protocol_fields_are_reported_together() -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_connect_params({"client": HEALTH_CONNECT_CLIENT})
    assert info.value.message == (
        "invalid connect params: at root: must have required property 'minProtocol'; "
        "at root: must have required property 'maxProtocol'"
    )


def test_request_frames() -> None:
    assert parse_request({"type": "req", "id": "2:a", "method": "health"}) == RequestFrame(
        "2:a", "health", {}
    )
    frame = parse_request({"type": "req", "id": "2:a", "method": "x", "params": {"a": 1}, "extra": True})
    assert frame.params == {"a": 1}
    assert request_to_wire(RequestFrame("1", "m", {}, "tp")) == {
        "type": "req",
        "id": "1",
        "method": "m",
        "params": {},
        "traceparent": "tp",
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "invalid request frame: at root: must be object"),
        ({"type": "req", "method": "m"}, "invalid request frame: at root: must have required property 'id'"),
        ({"type": "event", "id": "1", "method": "m"}, 'invalid request frame: at /type: must be equal to constant "req"'),
        ({"type": "req", "id": "1", "method": "m", "params": 3}, "invalid request frame: at /params: must be object"),
        ({"type": "req", "id": "1", "method": "m", "traceparent": 3}, "invalid request frame: at /traceparent: must be string"),
        ({"type": "req", "id": "x" * 129, "method": "m"}, "invalid request frame: at /id: must NOT have more than 128 characters"),
    ],
)  # fmt: skip
def test_bad_request_frames(raw: Any, message: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_request(raw)
    assert info.value.message == message


def test_response_and_event_key_order_matches_openclaw() -> None:
    ok = response_to_wire("1", ok=True, payload=None, with_payload=True)
    assert list(ok) == ["type", "id", "ok", "payload"]
    err = response_to_wire("1", ok=False, error={"code": "X", "message": "m"}, with_payload=False)
    assert list(err) == ["type", "id", "ok", "error"]
    ev = event_to_wire(EventFrame("health", {}, 3, {"presence": 1, "health": 2}))
    assert list(ev) == ["type", "event", "payload", "seq", "stateVersion"]
    assert event_to_wire(EventFrame("connect.challenge", {"nonce": "n"})) == {
        "type": "event",
        "event": "connect.challenge",
        "payload": {"nonce": "n"},
    }


def test_advertised_events_include_the_core_ones() -> None:
    names = {str(e) for e in GatewayEvent}
    assert {"connect.challenge", "tick", "health", "presence", "shutdown", "chat", "agent"} <= names
    assert {"sessions.changed", "cron"} <= names


def test_format_problems() -> None:
    assert format_problems([]) == ""


# ------------------------------------------------------------------------------------------------ properties

texts = st.text(min_size=1, max_size=30)
opt_texts = st.none() | st.text(max_size=30)
clients = st.builds(
    ClientInfo,
    id=texts,
    version=texts,
    platform=texts,
    mode=texts,
    display_name=opt_texts,
    device_family=opt_texts,
    model_identifier=opt_texts,
    instance_id=opt_texts,
    build_id=opt_texts,
    time_zone=opt_texts,
)
connects = st.builds(
    ConnectParams,
    min_protocol=st.integers(0, 10),
    max_protocol=st.integers(0, 10),
    client=clients,
    role=st.sampled_from(["operator", "node"]),
    scopes=st.lists(st.text(max_size=20), max_size=5).map(tuple),
    caps=st.lists(st.text(max_size=20), max_size=5).map(tuple),
    auth=st.builds(
        ConnectAuth, token=opt_texts, password=opt_texts, device_token=opt_texts, bootstrap_token=opt_texts
    ),
    locale=opt_texts,
    user_agent=opt_texts,
)


@settings(max_examples=200)
@given(connects)
def test_connect_params_round_trip(params: ConnectParams) -> None:
    wire = json.loads(json.dumps(connect_params_to_wire(params)))
    assert parse_connect_params(wire) == params


@settings(max_examples=200)
@given(
    st.builds(
        RequestFrame,
        id=st.text(min_size=1, max_size=128),
        method=st.text(min_size=1, max_size=128),
        params=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
        traceparent=st.none() | st.text(min_size=1, max_size=128),
    )
)
def test_request_round_trip(frame: RequestFrame) -> None:
    assert parse_request(json.loads(json.dumps(request_to_wire(frame)))) == frame


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=15,
)


@settings(max_examples=300)
@given(
    json_values | st.dictionaries(st.sampled_from(["type", "id", "method", "params", "client"]), json_values)
)
def test_decoders_raise_only_validation_failed(value: Any) -> None:
    for decode in (parse_request, parse_connect_params):
        details: Any = {}
        try:
            decode(value)
        except ValidationFailed as exc:
            details = exc.details
        assert details is not None
        json.dumps(details)
