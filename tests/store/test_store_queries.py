"""Typed queries round-trip their models and implement the filters the gateway relies on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.models.sessions import OVERRIDE_FIELDS, SessionRecord, TokenCounters, UsageRecord
from appliance.store import (
    Database,
    SessionFilter,
    StoreConflict,
    append_message,
    compact_transcript,
    count_messages,
    count_sessions,
    create_session,
    delete_session,
    delete_transcript,
    ensure_session,
    find_session_by_id,
    find_session_by_label,
    get_session,
    history,
    list_sessions,
    open_database,
    recent_sessions,
    record_usage,
    reset_session,
    tail_messages,
    touch_session,
    upsert_session,
    usage_by_model,
    usage_by_session,
    usage_daily,
    usage_logs,
    usage_totals,
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "q.db")
    yield database
    database.close()


def _full_record() -> SessionRecord:
    return SessionRecord(
        key="agent:main:subagent:abc",
        session_id="sid-full",
        agent_id="main",
        created_at=1,
        updated_at=2,
        session_started_at=3,
        label="Research",
        spawned_by="agent:main:main",
        spawn_depth=1,
        overrides={"thinkingLevel": "high", "execHost": "sandbox"},
        last_interaction_at=4,
        lifecycle_revision="rev-5",
        tokens=TokenCounters(input=6, output=7, cache_read=8, cache_write=9, total=30, cost_usd=0.25),
        context_tokens=128000,
        archived=True,
        pinned=True,
        model_provider="openai",
        model="gpt-test",
        last_run_id="run-1",
        last_run_error="boom",
        compaction_count=2,
    )


def test_session_round_trip(db: Database) -> None:
    rec = _full_record()
    upsert_session(db, rec)
    assert get_session(db, rec.key) == rec
    assert find_session_by_label(db, "Research") == rec
    assert find_session_by_id(db, "sid-full") == rec
    assert get_session(db, "agent:main:missing") is None
    changed = attrs.evolve(rec, label=None, overrides={})
    upsert_session(db, changed)
    assert get_session(db, rec.key) == changed
    assert find_session_by_label(db, "Research") is None


def test_label_is_unique_but_null_is_not(db: Database) -> None:
    create_session(db, key="agent:main:a", agent_id="main", now_ms=1, label="same")
    create_session(db, key="agent:main:b", agent_id="main", now_ms=1)
    create_session(db, key="agent:main:c", agent_id="main", now_ms=1)
    with pytest.raises(StoreConflict):
        create_session(db, key="agent:main:d", agent_id="main", now_ms=1, label="same")
    # exact comparison, as OpenClaw's
    create_session(db, key="agent:main:e", agent_id="main", now_ms=1, label="Same")


def test_ensure_and_touch(db: Database) -> None:
    first = ensure_session(db, key="agent:main:main", agent_id="main", now_ms=100)
    again = ensure_session(db, key="agent:main:main", agent_id="main", now_ms=200)
    assert first == again
    touch_session(db, "agent:main:main", now_ms=300)
    rec = get_session(db, "agent:main:main")
    assert rec is not None
    assert (rec.updated_at, rec.last_interaction_at) == (300, 300)
    touch_session(db, "agent:main:main", now_ms=50, interaction=False)
    rec2 = get_session(db, "agent:main:main")
    assert rec2 is not None
    assert rec2.updated_at == 300


def test_list_filters_order_and_paging(db: Database) -> None:
    create_session(db, key="agent:main:main", agent_id="main", now_ms=10)
    create_session(db, key="agent:work:telegram:group:42", agent_id="work", now_ms=20, label="Team")
    create_session(
        db,
        key="agent:main:subagent:x",
        agent_id="main",
        now_ms=30,
        spawned_by="agent:main:main",
        spawn_depth=1,
    )
    create_session(db, key="global", agent_id="main", now_ms=40)
    create_session(db, key="agent:main:100%_done", agent_id="main", now_ms=5)

    rows, total = list_sessions(db, SessionFilter())
    assert [r.key for r in rows] == [
        "agent:main:subagent:x",
        "agent:work:telegram:group:42",
        "agent:main:main",
        "agent:main:100%_done",
    ]
    assert total == 4
    rows, total = list_sessions(db, SessionFilter(include_global=True))
    assert total == 5
    assert rows[0].key == "global"
    assert [r.key for r in list_sessions(db, SessionFilter(agent_id="work"))[0]] == [
        "agent:work:telegram:group:42"
    ]
    assert [r.key for r in list_sessions(db, SessionFilter(label="Team"))[0]] == [
        "agent:work:telegram:group:42"
    ]
    assert [r.key for r in list_sessions(db, SessionFilter(spawned_by="agent:main:main"))[0]] == [
        "agent:main:subagent:x"
    ]
    assert [r.key for r in list_sessions(db, SessionFilter(search="TEAM"))[0]] == [
        "agent:work:telegram:group:42"
    ]
    # LIKE wildcards in the search text are literal
    assert [r.key for r in list_sessions(db, SessionFilter(search="100%_"))[0]] == ["agent:main:100%_done"]
    assert list_sessions(db, SessionFilter(search="%"))[1] == 1
    page, total = list_sessions(db, SessionFilter(limit=2, offset=1))
    assert [r.key for r in page] == ["agent:work:telegram:group:42", "agent:main:main"]
    assert total == 4
    assert [r.key for r in list_sessions(db, SessionFilter(active_since_ms=20))[0]] == [
        "agent:main:subagent:x",
        "agent:work:telegram:group:42",
    ]
    assert count_sessions(db) == 5
    glob, sub = get_session(db, "global"), get_session(db, "agent:main:subagent:x")
    assert glob is not None
    assert sub is not None
    assert recent_sessions(db, 2) == [
        {"key": "global", "sessionId": glob.session_id, "updatedAt": 40},
        {"key": "agent:main:subagent:x", "sessionId": sub.session_id, "updatedAt": 30},
    ]
    assert recent_sessions(db, 0) == []


def test_archived_rows_are_hidden_unless_asked(db: Database) -> None:
    upsert_session(db, _full_record())
    assert list_sessions(db, SessionFilter())[1] == 0
    assert list_sessions(db, SessionFilter(include_archived=True))[1] == 1


def test_reset_rotates_id_and_zeroes_counters(db: Database) -> None:
    upsert_session(db, _full_record())
    fresh = reset_session(db, "agent:main:subagent:abc", now_ms=1000, session_id="sid-new")
    assert fresh is not None
    assert fresh.session_id == "sid-new"
    assert fresh.lifecycle_revision not in ("", "rev-5")
    assert fresh.tokens == TokenCounters()
    assert fresh.session_started_at == 1000
    assert fresh.label == "Research"
    assert fresh.overrides == {"thinkingLevel": "high", "execHost": "sandbox"}
    assert get_session(db, fresh.key) == fresh
    assert reset_session(db, "agent:main:none", now_ms=1) is None


def test_delete_with_and_without_transcript(db: Database) -> None:
    a = create_session(db, key="agent:main:a", agent_id="main", now_ms=1)
    b = create_session(db, key="agent:main:b", agent_id="main", now_ms=1)
    for rec in (a, b):
        append_message(db, session_key=rec.key, session_id=rec.session_id, role="user", content="hi", ts=2)
    assert delete_session(db, "agent:main:a") == a
    assert count_messages(db, "agent:main:a") == 0
    assert delete_session(db, "agent:main:b", delete_transcript=False) == b
    assert count_messages(db, "agent:main:b") == 1
    assert delete_session(db, "agent:main:b") is None
    assert delete_transcript(db, "agent:main:b") == 1


def test_transcript_seq_idempotency_history_and_compaction(db: Database) -> None:
    rec = create_session(db, key="agent:main:main", agent_id="main", now_ms=1)
    k, sid = rec.key, rec.session_id
    first = append_message(
        db, session_key=k, session_id=sid, role="user", content="hello", ts=10, idempotency_key="idem-1"
    )
    dup = append_message(
        db, session_key=k, session_id=sid, role="user", content="ignored", ts=11, idempotency_key="idem-1"
    )
    assert dup == first
    for i in range(2, 11):
        append_message(
            db,
            session_key=k,
            session_id=sid,
            role="assistant" if i % 2 else "user",
            content=[{"type": "text", "text": f"m{i}"}],
            ts=10 + i,
            usage={"input": i} if i % 2 else None,
        )
    assert [m.seq for m in history(db, k, sid)] == list(range(1, 11))
    assert [m.seq for m in history(db, k, sid, limit=3, before_seq=8)] == [5, 6, 7]
    assert [m.seq for m in tail_messages(db, k, sid, 2)] == [9, 10]
    last = tail_messages(db, k, sid, 1)[0]
    assert last.content == [{"type": "text", "text": "m10"}]
    assert history(db, k, sid)[2].usage == {"input": 3}
    assert compact_transcript(db, k, sid, 4) == (4, 6)
    assert [m.seq for m in history(db, k, sid)] == [7, 8, 9, 10]
    assert compact_transcript(db, k, sid, 10) == (4, 0)
    with pytest.raises(ValueError, match="max_lines"):
        compact_transcript(db, k, sid, 0)
    # seq keeps growing after compaction and across a reset
    fresh = reset_session(db, k, now_ms=99)
    assert fresh is not None
    msg = append_message(db, session_key=k, session_id=fresh.session_id, role="user", content="new", ts=100)
    assert msg.seq == 11
    assert [m.content for m in history(db, k, fresh.session_id)] == ["new"]


def test_usage_rows_sum_per_day_session_and_model(db: Database) -> None:
    rec = create_session(db, key="agent:main:main", agent_id="main", now_ms=1)

    def use(day: str, ts: int, model: str, total: int, cost: float, key: str | None = rec.key) -> None:
        record_usage(
            db,
            UsageRecord(
                agent_id="main",
                ts=ts,
                day=day,
                provider="openai",
                model=model,
                session_key=key,
                session_id=rec.session_id if key else None,
                input=total // 2,
                output=total - total // 2,
                total=total,
                input_cost=cost / 2,
                output_cost=cost / 2,
                total_cost=cost,
            ),
        )

    use("2026-11-01", 100, "a", 10, 0.5)
    use("2026-11-01", 200, "b", 20, 1.0)
    use("2026-11-03", 300, "a", 30, 1.5)
    use("2026-11-03", 400, "a", 5, 0.0, key=None)

    daily = usage_daily(db, "2026-11-01", "2026-11-30")
    assert [(d.date, d.totals.total, d.totals.calls) for d in daily] == [
        ("2026-11-01", 30, 2),
        ("2026-11-03", 35, 2),
    ]
    assert usage_daily(db, "2026-11-02", "2026-11-30")[0].date == "2026-11-03"
    totals = usage_totals(db, session_key=rec.key)
    assert (totals.total, totals.total_cost, totals.calls) == (60, 3.0, 3)
    sessions = usage_by_session(db)
    assert [(k, t.total, first, last) for k, _a, t, first, last in sessions] == [(rec.key, 60, 100, 300)]
    assert [(m, t.total) for _p, m, t in usage_by_model(db)] == [("a", 45), ("b", 20)]
    assert [r.ts for r in usage_logs(db, rec.key, limit=2)] == [200, 300]
    stored = get_session(db, rec.key)
    assert stored is not None
    assert (stored.tokens.total, stored.tokens.cost_usd, stored.model) == (60, 3.0, "a")


_ints = st.integers(0, 2**53 - 1)
_text = st.text(max_size=20)
_records = st.builds(
    SessionRecord,
    key=st.just("agent:main:prop"),
    session_id=st.uuids().map(str),
    agent_id=st.sampled_from(["main", "work"]),
    created_at=_ints,
    updated_at=_ints,
    session_started_at=_ints,
    label=st.none() | _text,
    spawned_by=st.none() | _text,
    spawn_depth=st.none() | _ints,
    overrides=st.dictionaries(st.sampled_from(OVERRIDE_FIELDS), _text, max_size=4),
    last_interaction_at=st.none() | _ints,
    lifecycle_revision=_text,
    tokens=st.builds(
        TokenCounters,
        _ints,
        _ints,
        _ints,
        _ints,
        _ints,
        st.floats(min_value=0, max_value=1e9, allow_nan=False),
    ),
    context_tokens=st.none() | _ints,
    archived=st.booleans(),
    pinned=st.booleans(),
    model_provider=st.none() | _text,
    model=st.none() | _text,
    last_run_id=st.none() | _text,
    last_run_error=st.none() | _text,
    compaction_count=_ints,
)


def test_store_round_trip_property(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Whatever record goes in comes back equal (row converters are exact inverses)."""
    database = open_database(tmp_path_factory.mktemp("prop") / "prop.db")

    @settings(max_examples=150, deadline=None)
    @given(_records)
    def run(rec: SessionRecord) -> None:
        upsert_session(database, rec)
        assert get_session(database, rec.key) == rec

    try:
        run()
    finally:
        database.close()
