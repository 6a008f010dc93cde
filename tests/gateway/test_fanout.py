"""``state.fanout`` and the subscription methods on a real store and agent runtime (no sockets).

Connections are recording sinks in ``state.broadcasters``: what a sink records is exactly what the
server would queue on that socket (the scope guard and ``seq`` are the socket's, tested in
``test_subscribe_server.py``).
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from appliance import log as applog
from appliance.agent import AgentRuntime
from appliance.config.settings import Settings
from appliance.errors import InvalidRequest, ValidationFailed
from appliance.gateway.dispatch import MethodContext
from appliance.gateway.methods import chat, sessions, subscriptions
from appliance.gateway.state import EncodedEvent, GatewayState
from appliance.gateway.table import build_method_table
from appliance.models.sessions import TranscriptMessage
from appliance.store import open_database

NOW = 1_795_420_774_708
X, Y = "agent:main:x", "agent:main:y"


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], bool]] = []

    def deliver(self, event: str, encoded: EncodedEvent, *, drop_if_slow: bool = False) -> None:
        self.events.append((event, json.loads(encoded.payload_json), drop_if_slow))

    def names(self) -> list[str]:
        return [e for e, _, _ in self.events]

    def of(self, event: str) -> list[dict[str, Any]]:
        return [p for e, p, _ in self.events if e == event]


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


def connect(state: GatewayState, *conn_ids: str) -> dict[str, RecordingSink]:
    sinks = {}
    for conn_id in conn_ids:
        sinks[conn_id] = state.broadcasters[conn_id] = RecordingSink()
        state.fanout.connection_opened(conn_id)
    return sinks


def context(state: GatewayState, conn_id: str) -> MethodContext:
    async def emit(event: str, payload: Any) -> None:
        return None

    return MethodContext(
        state=state, conn_id=conn_id, req_id="r1", scopes=frozenset({"operator.admin"}), emit=emit
    )


async def call(state: GatewayState, conn_id: str, method: str, params: dict[str, Any]) -> Any:
    table = build_method_table()
    return await table.methods[method].handler(context(state, conn_id), params)


async def run_chat(state: GatewayState, conn_id: str, key: str, run_id: str, text: str = "hello") -> None:
    res = await call(
        state, conn_id, "chat.send", {"sessionKey": key, "message": text, "idempotencyKey": run_id}
    )
    assert res == {"runId": run_id, "status": "started"}
    with trio.fail_after(10):
        outcome = await chat.runtime_for(state).wait(run_id, 10)
    assert outcome is not None


# -- methods ------------------------------------------------------------------------------------------


async def test_methods_are_in_the_table_with_read_scope() -> None:
    table = build_method_table()
    for name, scope in subscriptions.SUBSCRIPTION_SCOPES.items():
        assert table.methods[name].scope == scope
        assert str(scope) == "operator.read"
    advertised = set(table.advertised())
    assert {
        "sessions.subscribe",
        "sessions.messages.subscribe",
        "sessions.messages.unsubscribe",
    } <= advertised
    assert "sessions.unsubscribe" not in advertised  # gone from 2026.9.6's list; still answered


async def test_sessions_subscribe_and_unsubscribe(state: GatewayState) -> None:
    assert await call(state, "c1", "sessions.subscribe", {}) == {"subscribed": True}
    assert state.fanout.registry.session_subscribers() == {"c1"}
    assert await call(state, "c1", "sessions.unsubscribe", {}) == {"subscribed": False}
    assert state.fanout.registry.session_subscribers() == frozenset()


async def test_sessions_subscribe_with_list_params_answers_the_list(state: GatewayState) -> None:
    await sessions.table.methods["sessions.patch"].handler(context(state, "c0"), {"key": X, "label": "x"})
    out = await call(state, "c1", "sessions.subscribe", {"limit": 5})
    assert out["subscribed"] is True
    assert [row["key"] for row in out["list"]["sessions"]] == [X]
    assert state.fanout.registry.session_subscribers() == {"c1"}


async def test_sessions_subscribe_with_bad_params_subscribes_nothing(state: GatewayState) -> None:
    with pytest.raises(ValidationFailed, match=r"invalid sessions\.list params"):
        await call(state, "c1", "sessions.subscribe", {"limit": "many"})
    assert state.fanout.registry.session_subscribers() == frozenset()
    with pytest.raises(ValidationFailed, match="unexpected property 'x'"):
        await call(state, "c1", "sessions.unsubscribe", {"x": 1})


async def test_messages_subscribe_answers_the_canonical_key(state: GatewayState) -> None:
    out = await call(state, "c1", "sessions.messages.subscribe", {"key": "main"})
    assert out == {"subscribed": True, "key": "agent:main:main"}
    out = await call(state, "c1", "sessions.messages.subscribe", {"key": "Work", "agentId": "ops"})
    assert out == {"subscribed": True, "key": "agent:ops:work"}
    assert state.fanout.registry.keys_of("c1") == {"agent:main:main", "agent:ops:work"}
    out = await call(state, "c1", "sessions.messages.unsubscribe", {"key": "agent:main:main"})
    assert out == {"subscribed": False, "key": "agent:main:main"}
    assert state.fanout.registry.keys_of("c1") == {"agent:ops:work"}
    # unsubscribing what was never subscribed answers the same
    out = await call(state, "c2", "sessions.messages.unsubscribe", {"key": "main"})
    assert out == {"subscribed": False, "key": "agent:main:main"}


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({}, ValidationFailed, "must have required property 'key'"),
        ({"key": ""}, ValidationFailed, "must not have fewer than 1 characters"),
        ({"key": "   "}, InvalidRequest, "key required"),
        ({"key": 5}, ValidationFailed, "must be string"),
        ({"key": "main", "extra": 1}, ValidationFailed, "unexpected property 'extra'"),
        ({"key": "main", "includeApprovals": False}, ValidationFailed, "must be equal to constant"),
        (
            {"key": "main", "includeApprovals": True},
            InvalidRequest,
            "includeApprovals requires a paired device",
        ),
    ],
)
async def test_messages_subscribe_refuses_bad_params(
    state: GatewayState, params: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await call(state, "c1", "sessions.messages.subscribe", params)
    assert state.fanout.registry.subscription_count() == 0


async def test_a_connection_past_the_key_bound_is_refused(state: GatewayState) -> None:
    state.fanout.registry.max_keys_per_conn = 2
    await call(state, "c1", "sessions.messages.subscribe", {"key": "a"})
    await call(state, "c1", "sessions.messages.subscribe", {"key": "b"})
    with pytest.raises(InvalidRequest, match="too many session subscriptions"):
        await call(state, "c1", "sessions.messages.subscribe", {"key": "c"})


# -- runs ---------------------------------------------------------------------------------------------


async def test_a_run_reaches_its_origin_and_the_sessions_subscribers_only(state: GatewayState) -> None:
    sinks = connect(state, "a", "b", "c", "d")
    state.broadcasters["e"] = sinks["e"] = RecordingSink()
    state.fanout.connection_opened("e", ["session-scoped-events"])
    await call(state, "b", "sessions.messages.subscribe", {"key": X})
    await call(state, "c", "sessions.messages.subscribe", {"key": Y})
    await call(state, "e", "sessions.subscribe", {})
    await run_chat(state, "a", X, "run-1")

    a, b = sinks["a"], sinks["b"]
    run_events = [(e, p) for e, p, _ in b.events if e in ("chat", "agent", "task")]
    assert run_events == [(e, p) for e, p, _ in a.events if e in ("chat", "agent", "task")]
    assert [e for e, _ in run_events] == ["task", "agent", "chat", "agent", "chat", "task"]
    final = b.of("chat")[-1]
    assert (final["state"], final["runId"], final["sessionKey"]) == ("final", "run-1", X)
    deltas = [(p["state"], d) for e, p, d in b.events if e == "chat"]
    assert deltas == [("delta", True), ("final", False)]  # only deltas may be dropped for a slow client

    # the user line and the reply, as stored, each once, before the events that announce them
    messages = b.of("session.message")
    assert [(m["message"]["role"], m["messageSeq"]) for m in messages] == [("user", 1), ("assistant", 2)]
    assert messages[0]["message"]["content"] == "hello"
    assert messages[0]["message"]["__openclaw"]["idempotencyKey"] == "run-1:user"
    assert {m["sessionKey"] for m in messages} == {X}
    assert {m["runId"] for m in messages} == {"run-1"}
    assert all(m["agentId"] == "main" and m["sessionId"] for m in messages)
    assert b.names().index("session.message") < b.names().index("agent")
    assert a.of("session.message") == []  # the origin did not subscribe: run events only

    # a session-list subscriber sees the transcript lines and the lifecycle, not the stream
    e = sinks["e"]
    assert [m["messageSeq"] for m in e.of("session.message")] == [1, 2]
    changed = e.of("sessions.changed")
    assert [(c["phase"], c["runId"], c["hasActiveRun"]) for c in changed] == [
        ("start", "run-1", True),
        ("end", "run-1", False),
    ]
    assert all(c["sessionKey"] == X and c["ts"] == NOW for c in changed)
    assert not any(name in ("chat", "agent", "task") for name in e.names())  # it has the cap

    assert sinks["c"].events == []  # another session
    assert sinks["d"].events == []  # not subscribed


async def test_an_unsubscribed_client_stops_seeing_the_session(state: GatewayState) -> None:
    sinks = connect(state, "a", "b")
    await call(state, "b", "sessions.messages.subscribe", {"key": X})
    await run_chat(state, "a", X, "run-1")
    seen = len(sinks["b"].events)
    assert seen > 0
    await call(state, "b", "sessions.messages.unsubscribe", {"key": X})
    await run_chat(state, "a", X, "run-2")
    assert len(sinks["b"].events) == seen
    assert sinks["a"].of("chat")[-1]["runId"] == "run-2"


async def test_a_channel_turn_published_through_run_sink_reaches_subscribers(state: GatewayState) -> None:
    """What ``appliance.runtime.channels`` does: no origin connection, the same sink."""
    from appliance.agent import TurnRequest

    sinks = connect(state, "a", "b")
    await call(state, "b", "sessions.messages.subscribe", {"key": X})
    runtime = chat.runtime_for(state)
    run = runtime.submit(
        TurnRequest(session_key=X, message="from telegram", run_id="tg-1"), state.fanout.run_sink(X)
    )
    with trio.fail_after(10):
        await run.done.wait()
    assert next(m["message"]["content"] for m in sinks["b"].of("session.message")) == "from telegram"
    assert sinks["b"].of("chat")[-1]["state"] == "final"
    assert sinks["a"].events == []


async def test_a_capless_session_list_subscriber_gets_the_stream_too(state: GatewayState) -> None:
    """What the 2026.9.6 TUI needs to show another client's reply (it has no session-scoped-events cap)."""
    sinks = connect(state, "a", "tui", "idle")
    await call(state, "tui", "sessions.subscribe", {})
    await run_chat(state, "a", X, "run-1")
    tui = sinks["tui"]
    assert tui.of("chat")[-1]["state"] == "final"
    assert [m["message"]["role"] for m in tui.of("session.message")] == ["user", "assistant"]
    assert [c["phase"] for c in tui.of("sessions.changed")] == ["start", "end"]
    assert sinks["idle"].events == []


async def test_legacy_broadcast_sends_runs_to_clients_without_the_cap(state: GatewayState) -> None:
    sinks = connect(state, "a", "tui")
    state.broadcasters["app"] = sinks["app"] = RecordingSink()
    state.fanout.connection_opened("app", ["session-scoped-events"])
    state.fanout.legacy_broadcast = True
    await run_chat(state, "a", X, "run-1")
    assert sinks["tui"].of("chat")[-1]["runId"] == "run-1"
    assert sinks["app"].events == []


async def test_disconnect_unsubscribes(state: GatewayState) -> None:
    connect(state, "b")
    await call(state, "b", "sessions.messages.subscribe", {"key": X})
    await call(state, "b", "sessions.subscribe", {})
    state.broadcasters.pop("b")
    state.fanout.connection_closed("b")
    assert state.fanout.registry.subscription_count() == 0


# -- direct publishing ---------------------------------------------------------------------------------


async def test_publish_session_message_from_a_stored_line_or_a_dict(state: GatewayState) -> None:
    sinks = connect(state, "b", "c")
    assert state.fanout.publish_session_message(X, {"role": "user", "content": "x"}) == 0  # nobody listens
    state.fanout.subscribe_messages("b", X)
    line = TranscriptMessage(X, "s1", 9, "assistant", [{"type": "text", "text": "hi"}], NOW, id=41)
    assert state.fanout.publish_session_message(X, line) == 1
    assert state.fanout.publish_session_message(X, {"role": "user", "content": "x"}, message_seq=10) == 1
    first, second = sinks["b"].of("session.message")
    assert first["messageId"] == "41"
    assert (first["messageSeq"], first["sessionId"], first["agentId"]) == (9, "s1", "main")
    assert first["message"]["content"] == [{"type": "text", "text": "hi"}]
    assert second == {
        "sessionKey": X,
        "agentId": "main",
        "message": {"role": "user", "content": "x"},
        "messageSeq": 10,
    }
    assert [d for e, _, d in sinks["b"].events] == [False, False]  # as 2026.9.6: never drop-if-slow
    assert sinks["c"].events == []


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    applog.configure(level="debug", stream=buffer, human=False)
    try:
        yield buffer
    finally:
        applog.configure()


async def test_a_payload_that_is_not_json_is_logged_not_raised(
    state: GatewayState, log_lines: io.StringIO
) -> None:
    connect(state, "a")
    assert state.fanout.publish_run_event(X, "chat", {"bad": object()}, origin_conn_id="a") == 0
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert next(line for line in lines if line["event"] == "broadcast_failed")["broadcast_event"] == "chat"


async def test_sessions_changed_from_mutations_reach_session_subscribers_only(state: GatewayState) -> None:
    sinks = connect(state, "a", "b")
    await call(state, "b", "sessions.subscribe", {})
    await sessions.table.methods["sessions.patch"].handler(context(state, "a"), {"key": X, "label": "x"})
    (changed,) = sinks["b"].of("sessions.changed")
    assert (changed["sessionKey"], changed["reason"], changed["label"], changed["agentId"]) == (
        X,
        "patch",
        "x",
        "main",
    )
    assert sinks["a"].events == []
