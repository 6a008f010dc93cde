"""Session models and their OpenClaw wire shapes."""

from __future__ import annotations

import pytest

from appliance.errors import InvalidRequest, ValidationFailed
from appliance.models.convert import Params
from appliance.models.sessions import (
    SessionRecord,
    TokenCounters,
    TranscriptMessage,
    UsageDay,
    UsageTotals,
    apply_session_patch,
    message_text,
    message_to_wire,
    session_to_wire,
    usage_day_to_wire,
)


def _rec(key: str = "agent:main:main", **kw: object) -> SessionRecord:
    base: dict[str, object] = {
        "key": key,
        "session_id": "sid",
        "agent_id": "main",
        "created_at": 1,
        "updated_at": 2,
        "session_started_at": 1,
    }
    base.update(kw)
    return SessionRecord(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "kind", "chat_type"),
    [
        ("agent:main:main", "direct", "direct"),
        ("global", "global", "direct"),
        ("unknown", "unknown", "direct"),
        ("agent:main:telegram:group:1", "group", "group"),
        ("agent:main:discord:channel:1", "group", "channel"),
        ("agent:main:global", "global", "direct"),
    ],
)
def test_kind_and_chat_type(key: str, kind: str, chat_type: str) -> None:
    rec = _rec(key)
    assert rec.kind == kind
    assert rec.chat_type == chat_type


def test_session_to_wire_is_camel_case_and_omits_none() -> None:
    rec = _rec(
        label="Work",
        overrides={"thinkingLevel": "high", "providerOverride": "anthropic", "modelOverride": "claude"},
        tokens=TokenCounters(input=1, output=2, cache_read=3, cache_write=4, total=10, cost_usd=0.5),
    )
    row = session_to_wire(rec, extra={"derivedTitle": "hi"})
    assert row["key"] == "agent:main:main"
    assert row["sessionId"] == "sid"
    assert row["label"] == "Work"
    assert row["thinkingLevel"] == "high"
    assert (row["modelProvider"], row["model"]) == ("anthropic", "claude")
    assert (row["inputTokens"], row["totalTokens"], row["estimatedCostUsd"]) == (1, 10, 0.5)
    assert row["derivedTitle"] == "hi"
    assert "spawnedBy" not in row
    assert "lastInteractionAt" not in row
    assert row["kind"] == "direct"
    assert row["hasActiveRun"] is False


def test_message_text_and_wire() -> None:
    assert message_text("plain") == "plain"
    assert (
        message_text([{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}])
        == "a\nb"
    )
    assert message_text({"text": "x"}) == "x"
    assert message_text(42) == ""
    msg = TranscriptMessage(
        session_key="agent:main:main", session_id="sid", seq=3, role="user", content="hi", ts=9, id=7
    )
    assert message_to_wire(msg) == {
        "role": "user",
        "content": "hi",
        "timestamp": 9,
        "__openclaw": {"id": "7", "recordTimestampMs": 9, "seq": 3},
    }


def test_usage_day_wire() -> None:
    day = UsageDay("2026-11-01", UsageTotals(input=1, output=2, total=3, total_cost=0.1234567, calls=1))
    wire = usage_day_to_wire(day)
    assert wire["date"] == "2026-11-01"
    assert wire["totalTokens"] == 3
    assert wire["totalCost"] == 0.123457
    assert wire["missingCostEntries"] == 0


def test_apply_session_patch_without_a_store() -> None:
    key = "agent:main:subagent:x"
    base = _rec(key)
    out = apply_session_patch(
        {"spawnedBy": "agent:main:main", "spawnDepth": 2, "label": "  L ", "reasoningLevel": "on"},
        key,
        None,
        base,
    )
    assert (out.spawned_by, out.spawn_depth, out.label, out.overrides) == (
        "agent:main:main",
        2,
        "L",
        {"reasoningLevel": "on"},
    )
    cleared = apply_session_patch({"reasoningLevel": "OFF", "label": None}, key, out, out)
    assert (cleared.label, cleared.overrides) == (None, {})
    with pytest.raises(InvalidRequest, match="spawnDepth cannot be changed once set"):
        apply_session_patch({"spawnDepth": 3}, key, out, out)
    assert base.overrides == {}  # inputs are never mutated


def test_params_reader() -> None:
    p = Params("m", {"a": 1.0, "b": True, "c": ["x"], "d": "v"}, ("a", "b", "c", "d", "e"))
    assert p.integer("a") == 1
    assert p.boolean("b") is True
    assert p.string_list("c") == ["x"]
    assert p.choice("d", ("v", "w")) == "v"
    assert p.integer("e", default=7) == 7
    assert p.string("e") is None
    with pytest.raises(ValidationFailed, match=r"at /b: must be integer"):
        p.integer("b")
    with pytest.raises(ValidationFailed, match=r"invalid m params: must have required property 'e'"):
        p.string("e", required=True)
    assert Params("m", None, ()).raw == {}
