"""``chat.*``, ``sessions.send`` and ``agent*`` handlers on a real store (no sockets)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from appliance.agent import AgentRuntime
from appliance.config.settings import Settings
from appliance.errors import InvalidRequest, ValidationFailed
from appliance.gateway.dispatch import MethodContext
from appliance.gateway.methods import chat
from appliance.gateway.state import EncodedEvent, GatewayState
from appliance.gateway.table import build_method_table
from appliance.store import open_database

NOW = 1_795_420_774_708


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def deliver(self, event: str, encoded: EncodedEvent, *, drop_if_slow: bool = False) -> None:
        self.events.append((event, json.loads(encoded.payload_json)))


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[GatewayState]:
    db = open_database(tmp_path / "gateway.db")
    st = GatewayState(settings=Settings(), db=db, wall_ms=lambda: NOW)
    async with trio.open_nursery() as nursery:
        runtime = AgentRuntime.from_settings(st.settings, db, wall_ms=st.wall_ms)
        runtime.start(nursery)
        chat.attach_runtime(st, runtime)
        yield st
        nursery.cancel_scope.cancel()
    db.close()


@pytest.fixture
def sink(state: GatewayState) -> RecordingSink:
    recorder = RecordingSink()
    state.broadcasters["c1"] = recorder
    return recorder


class Acks:
    def __init__(self) -> None:
        self.payloads: list[Any] = []

    async def __call__(self, payload: Any) -> None:
        self.payloads.append(payload)


def context(state: GatewayState, acks: Acks | None = None) -> MethodContext:
    async def emit(event: str, payload: Any) -> None:
        return None

    return MethodContext(
        state=state, conn_id="c1", req_id="2:req", scopes=frozenset({"operator.write"}), emit=emit, ack=acks
    )


async def call(state: GatewayState, method: str, params: dict[str, Any], acks: Acks | None = None) -> Any:
    return await chat.table.methods[method].handler(context(state, acks), params)


def test_table_is_registered_with_scopes() -> None:
    methods = build_method_table().methods
    for name in ("chat.send", "chat.history", "chat.abort", "sessions.send", "agent", "agent.wait"):
        assert name in methods
    assert str(methods["chat.send"].scope) == "operator.write"
    assert str(methods["agent"].scope) == "operator.write"
    assert str(methods["chat.history"].scope) == "operator.read"


async def test_agent_acks_then_answers_the_tool_result(state: GatewayState, sink: RecordingSink) -> None:
    acks = Acks()
    params = {"message": "/tool time_now", "sessionKey": "agent:main:main", "idempotencyKey": "k1"}
    with trio.fail_after(10):
        final = await call(state, "agent", params, acks)
    [ack] = acks.payloads
    assert ack == {
        "runId": "k1",
        "sessionKey": "agent:main:main",
        "agentId": "main",
        "status": "accepted",
        "acceptedAt": NOW,
    }
    assert final["runId"] == "k1"
    assert final["status"] == "ok"
    assert str(NOW) in final["summary"]
    names = [e for e, _ in sink.events]
    assert "agent" in names
    chat_events = [p for e, p in sink.events if e == "chat"]
    assert [p["state"] for p in chat_events] == ["delta", "final"]
    assert chat_events[-1]["message"]["content"][0]["text"] == final["summary"]
    # the same idempotency key answers the first result and runs nothing
    sink.events.clear()
    with trio.fail_after(10):
        again = await call(state, "agent", {**params, "message": "/tool model_info"}, Acks())
    assert again == final
    assert not [e for e, _ in sink.events if e == "chat"]


async def test_agent_tool_error_is_invalid_request(state: GatewayState, sink: RecordingSink) -> None:
    with trio.fail_after(10), pytest.raises(InvalidRequest) as info:
        await call(state, "agent", {"message": "/tool exec ls", "idempotencyKey": "k2"}, Acks())
    assert "sandbox not configured" in info.value.message
    assert [p["state"] for e, p in sink.events if e == "chat"] == ["error"]


async def test_chat_send_then_history(state: GatewayState, sink: RecordingSink) -> None:
    params = {"sessionKey": "agent:main:chat", "message": "hello", "idempotencyKey": "c1"}
    with trio.fail_after(10):
        res = await call(state, "chat.send", params)
        assert res == {"runId": "c1", "status": "started"}
        waited = await call(state, "agent.wait", {"runId": "c1", "timeoutMs": 5000})
    assert waited["status"] == "ok"
    assert await call(state, "chat.send", params) == res  # dedupe: nothing runs twice
    hist = await call(state, "chat.history", {"sessionKey": "agent:main:chat"})
    assert hist["sessionKey"] == "agent:main:chat"
    assert [m["role"] for m in hist["messages"]] == ["user", "assistant"]
    assert hist["messages"][0]["content"] == "hello"
    assert hist["messages"][0]["idempotencyKey"] == "c1:user"
    assert hist["messages"][1]["content"][0]["text"].startswith("No model configured")
    assert hist["totalMessages"] == 2


async def test_sessions_send_defaults_to_the_main_session(state: GatewayState, sink: RecordingSink) -> None:
    with trio.fail_after(10):
        res = await call(state, "sessions.send", {"message": "/tool time_now"})
        await call(state, "agent.wait", {"runId": res["runId"]})
    hist = await call(state, "chat.history", {"sessionKey": "main"})
    assert hist["sessionKey"] == "agent:main:main"
    assert len(hist["messages"]) == 2


async def test_history_of_an_unknown_session_is_empty(state: GatewayState) -> None:
    hist = await call(state, "chat.history", {"sessionKey": "agent:main:none"})
    assert hist["messages"] == []
    assert hist["sessionId"] is None


async def test_agent_wait_for_unknown_run_times_out(state: GatewayState) -> None:
    assert await call(state, "agent.wait", {"runId": "nope", "timeoutMs": 0}) == {
        "runId": "nope",
        "status": "timeout",
    }


async def test_abort_without_running_turns(state: GatewayState) -> None:
    res = await call(state, "chat.abort", {"sessionKey": "agent:main:main"})
    assert res == {"ok": True, "aborted": False, "runIds": []}


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("chat.send", {"sessionKey": "agent:main:main", "message": "hi"}),
        ("chat.send", {"message": "hi", "idempotencyKey": "x"}),
        ("chat.send", {"sessionKey": "agent:main:main", "message": "  ", "idempotencyKey": "x"}),
        ("chat.send", {"sessionKey": "agent:main:main", "message": 3, "idempotencyKey": "x"}),
        ("agent", {"message": "hi"}),
        ("agent", {"message": "hi", "idempotencyKey": "x", "bogus": 1}),
        ("chat.history", {}),
        ("agent.wait", {}),
    ],
)
async def test_bad_params_are_validation_errors(
    state: GatewayState, method: str, params: dict[str, Any]
) -> None:
    with pytest.raises(ValidationFailed) as info:
        await call(state, method, params, Acks())
    assert info.value.message.startswith(f"invalid {method} params")
