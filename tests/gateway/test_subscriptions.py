"""The subscription registry and the recipient rules, without sockets, trio or a store."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import InvalidRequest
from appliance.gateway.subscriptions import (
    SESSION_SCOPED_EVENTS_CAP,
    SubscriptionLimit,
    SubscriptionRegistry,
    history_entry,
    lifecycle_phase,
    run_event_recipients,
    session_message_payload,
    session_message_recipients,
    sessions_changed_payload,
    sessions_changed_recipients,
    transcript_suffixes,
)
from appliance.models.sessions import TranscriptMessage

X, Y = "agent:main:x", "agent:main:y"


def test_message_subscriptions_are_per_key_and_idempotent() -> None:
    reg = SubscriptionRegistry()
    assert reg.subscribe_messages("b", X) is True
    assert reg.subscribe_messages("b", X) is False
    assert reg.subscribe_messages("c", Y) is True
    assert reg.message_subscribers(X) == {"b"}
    assert reg.message_subscribers(Y) == {"c"}
    assert reg.message_subscribers("agent:main:nobody") == frozenset()
    assert reg.keys_of("b") == {X}
    assert reg.unsubscribe_messages("b", X) is True
    assert reg.unsubscribe_messages("b", X) is False
    assert reg.message_subscribers(X) == frozenset()
    assert not reg.has_message_subscribers(X)
    assert reg.keys_of("b") == frozenset()


def test_session_event_subscriptions() -> None:
    reg = SubscriptionRegistry()
    assert reg.subscribe_sessions("a") is True
    assert reg.subscribe_sessions("a") is False
    assert reg.session_subscribers() == {"a"}
    assert sessions_changed_recipients(reg) == {"a"}
    assert reg.unsubscribe_sessions("a") is True
    assert reg.unsubscribe_sessions("a") is False
    assert not reg.has_session_subscribers()


def test_drop_forgets_a_connection_everywhere() -> None:
    reg = SubscriptionRegistry()
    reg.connect("b")
    reg.subscribe_sessions("b")
    reg.subscribe_messages("b", X)
    reg.subscribe_messages("b", Y)
    reg.subscribe_messages("c", X)
    assert reg.subscription_count() == 4
    assert reg.drop("b") == 3
    assert reg.message_subscribers(X) == {"c"}
    assert reg.message_subscribers(Y) == frozenset()
    assert reg.session_subscribers() == frozenset()
    assert reg.legacy_connections() == frozenset()
    assert reg.drop("b") == 0
    assert reg.drop("never-seen") == 0
    assert reg.subscription_count() == 1


def test_a_connection_has_a_bounded_number_of_keys() -> None:
    reg = SubscriptionRegistry(max_keys_per_conn=2)
    reg.subscribe_messages("b", X)
    reg.subscribe_messages("b", Y)
    assert reg.subscribe_messages("b", X) is False  # already there: not a new key
    with pytest.raises(SubscriptionLimit) as info:
        reg.subscribe_messages("b", "agent:main:z")
    assert isinstance(info.value, InvalidRequest)
    assert info.value.details == {"limit": 2}
    assert reg.keys_of("b") == {X, Y}
    reg.subscribe_messages("c", "agent:main:z")  # the bound is per connection


def test_run_events_go_to_the_origin_and_the_sessions_subscribers() -> None:
    reg = SubscriptionRegistry()
    for conn in ("a", "b", "c", "e"):
        reg.connect(conn)
    reg.connect("d", [SESSION_SCOPED_EVENTS_CAP])
    reg.subscribe_messages("b", X)
    reg.subscribe_messages("c", Y)
    reg.subscribe_sessions("d")  # a session-list subscriber with the cap is not a message subscriber
    assert run_event_recipients(reg, X, "a") == {"a", "b"}
    assert run_event_recipients(reg, X, None) == {"b"}  # a channel turn has no origin
    assert run_event_recipients(reg, Y, "a") == {"a", "c"}
    assert run_event_recipients(reg, "agent:main:z", "a") == {"a"}
    assert "e" not in run_event_recipients(reg, X, "a")  # cap-less, but subscribed to nothing


def test_capless_session_list_subscribers_get_every_sessions_runs() -> None:
    """The 2026.9.6 TUI: no session-scoped-events cap, calls sessions.subscribe, expects chat events."""
    reg = SubscriptionRegistry()
    reg.connect("tui")
    reg.subscribe_sessions("tui")
    assert run_event_recipients(reg, X, "a") == {"a", "tui"}
    assert run_event_recipients(reg, Y, None) == {"tui"}
    reg.unsubscribe_sessions("tui")
    assert run_event_recipients(reg, X, None) == frozenset()
    reg.subscribe_sessions("never-connected")  # not known to be cap-less: subscription alone is not enough
    assert run_event_recipients(reg, X, None) == frozenset()


def test_legacy_broadcast_reaches_clients_without_the_session_scoped_cap() -> None:
    reg = SubscriptionRegistry()
    reg.connect("tui")  # the 2026.9.6 TUI declares no session-scoped-events cap
    reg.connect("app", [SESSION_SCOPED_EVENTS_CAP])
    reg.subscribe_messages("sub", X)
    assert run_event_recipients(reg, X, "a", legacy_broadcast=True) == {"a", "sub", "tui"}
    assert run_event_recipients(reg, X, "a") == {"a", "sub"}
    reg.connect("tui", [SESSION_SCOPED_EVENTS_CAP])  # a reconnect with the cap
    assert run_event_recipients(reg, X, None, legacy_broadcast=True) == {"sub"}


def test_session_messages_go_to_message_and_session_event_subscribers() -> None:
    reg = SubscriptionRegistry()
    reg.subscribe_messages("b", X)
    reg.subscribe_messages("c", Y)
    reg.subscribe_sessions("d")
    assert session_message_recipients(reg, X) == {"b", "d"}
    assert session_message_recipients(reg, Y) == {"c", "d"}
    assert session_message_recipients(SubscriptionRegistry(), X) == frozenset()


@pytest.mark.parametrize(
    ("event", "payload", "phase", "suffixes"),
    [
        ("agent", {"stream": "lifecycle", "data": {"phase": "start"}}, "start", ("user",)),
        ("agent", {"stream": "lifecycle", "data": {"phase": "end"}}, "end", ("assistant",)),
        ("agent", {"stream": "lifecycle", "data": {"phase": "error"}}, "error", ("failed",)),
        ("agent", {"stream": "lifecycle", "data": {"phase": "model"}}, None, ()),
        ("agent", {"stream": "tool", "data": {"phase": "start"}}, None, ()),
        ("agent", {"stream": "lifecycle", "data": "start"}, None, ()),
        ("chat", {"state": "delta"}, None, ()),
        ("chat", {"state": "final"}, None, ()),
        ("chat", {"state": "error"}, None, ()),
        ("task", {"action": "upserted"}, None, ()),
    ],
)
def test_what_a_run_event_implies(
    event: str, payload: dict[str, Any], phase: str | None, suffixes: tuple[str, ...]
) -> None:
    assert lifecycle_phase(event, payload) == phase
    assert transcript_suffixes(event, payload) == suffixes


def test_session_message_payload_has_openclaws_fields() -> None:
    msg = {"role": "user", "content": "hi"}
    assert session_message_payload(X, msg) == {"sessionKey": X, "message": msg}
    full = session_message_payload(
        X, msg, agent_id="main", message_id="7", message_seq=3, run_id="r1", session_id="s1"
    )
    assert full == {
        "sessionKey": X,
        "agentId": "main",
        "message": msg,
        "messageId": "7",
        "messageSeq": 3,
        "runId": "r1",
        "sessionId": "s1",
    }


def test_sessions_changed_payload_drops_none_fields() -> None:
    assert sessions_changed_payload(X, ts=5, reason="patch", label=None, kind="direct") == {
        "sessionKey": X,
        "reason": "patch",
        "ts": 5,
        "kind": "direct",
    }
    assert sessions_changed_payload(X, ts=5, phase="end", runId="r1") == {
        "sessionKey": X,
        "phase": "end",
        "ts": 5,
        "runId": "r1",
    }


def test_history_entry_flattens_custom_notes() -> None:
    plain = TranscriptMessage(X, "s1", 1, "user", "hi", 10, id=4, idempotency_key="r1:user")
    wire = history_entry(plain)
    assert wire["role"] == "user"
    assert wire["content"] == "hi"
    assert wire["__openclaw"] == {"id": "4", "idempotencyKey": "r1:user", "recordTimestampMs": 10, "seq": 1}
    note = TranscriptMessage(
        X, "s1", 2, "custom", {"customType": "run-failed", "text": "stopped", "runId": "r1"}, 11
    )
    wire = history_entry(note)
    assert (wire["customType"], wire["content"], wire["display"]) == ("run-failed", "stopped", True)
    assert wire["__openclaw"]["runId"] == "r1"


# -- property: the registry matches a plain model and never outgrows its live subscriptions

CONNS = st.sampled_from(["a", "b", "c", "d"])
KEYS = st.sampled_from([X, Y, "agent:main:z"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("sub"), CONNS, KEYS),
        st.tuples(st.just("unsub"), CONNS, KEYS),
        st.tuples(st.just("sessions"), CONNS, st.none()),
        st.tuples(st.just("unsessions"), CONNS, st.none()),
        st.tuples(st.just("drop"), CONNS, st.none()),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_registry_matches_a_model(ops: list[tuple[str, str, str | None]]) -> None:
    reg = SubscriptionRegistry(max_keys_per_conn=2)
    keys: dict[str, set[str]] = {}
    sessions: set[str] = set()
    for op, conn, key in ops:
        if op == "sub":
            assert key is not None
            mine = keys.setdefault(conn, set())
            if key not in mine and len(mine) >= 2:
                with pytest.raises(SubscriptionLimit):
                    reg.subscribe_messages(conn, key)
            else:
                assert reg.subscribe_messages(conn, key) == (key not in mine)
                mine.add(key)
        elif op == "unsub":
            assert key is not None
            assert reg.unsubscribe_messages(conn, key) == (key in keys.get(conn, set()))
            keys.get(conn, set()).discard(key)
        elif op == "sessions":
            reg.subscribe_sessions(conn)
            sessions.add(conn)
        elif op == "unsessions":
            reg.unsubscribe_sessions(conn)
            sessions.discard(conn)
        else:
            reg.drop(conn)
            keys.pop(conn, None)
            sessions.discard(conn)
        for k in (X, Y, "agent:main:z"):
            assert reg.message_subscribers(k) == {c for c, ks in keys.items() if k in ks}
        assert reg.session_subscribers() == sessions
        assert reg.subscription_count() == len(sessions) + sum(len(ks) for ks in keys.values())
    for conn in ("a", "b", "c", "d"):
        reg.drop(conn)
    assert reg.subscription_count() == 0
    assert reg._by_key == {}
    assert reg._by_conn == {}
