"""``usage.*`` and ``sessions.usage*`` handlers on a real database, plus a fuzz pass over every handler."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config.settings import Settings
from appliance.errors import ApplianceError, InvalidRequest
from appliance.gateway.dispatch import MethodContext
from appliance.gateway.methods import sessions as sessions_methods
from appliance.gateway.methods import usage as usage_methods
from appliance.gateway.state import GatewayState
from appliance.models.sessions import UsageRecord
from appliance.store import Database, create_session, open_database, record_usage

# 2026-11-23T12:00:00Z
NOW = int(dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC).timestamp() * 1000)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[GatewayState]:
    db = open_database(tmp_path / "usage.db")
    yield GatewayState(settings=Settings(), db=db, wall_ms=lambda: NOW)
    db.close()


def _ctx(state: GatewayState) -> MethodContext:
    async def emit(event: str, payload: Any) -> None:
        return None

    return MethodContext(
        state=state, conn_id="c", req_id="r", scopes=frozenset({"operator.admin"}), emit=emit
    )


@pytest.fixture
def ctx(state: GatewayState) -> MethodContext:
    return _ctx(state)


async def call(ctx: MethodContext, method: str, params: Any = None) -> Any:
    table = (
        usage_methods.table.methods
        if method in usage_methods.table.methods
        else sessions_methods.table.methods
    )
    return await table[method].handler(ctx, params if params is not None else {})


async def fails(ctx: MethodContext, method: str, params: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        await call(ctx, method, params)
    assert info.value.message == message


def _use(
    db: Database, key: str | None, day: str, total: int, cost: float, *, agent: str = "main", hour: int = 1
) -> None:
    ts = int(dt.datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00").timestamp() * 1000)
    record_usage(
        db,
        UsageRecord(
            agent_id=agent,
            ts=ts,
            day=day,
            provider="openai",
            model="gpt-test",
            session_key=key,
            input=total - 1,
            output=1,
            total=total,
            input_cost=cost,
            total_cost=cost,
        ),
    )


@pytest.fixture
def seeded(state: GatewayState) -> GatewayState:
    db = state.db
    create_session(db, key="agent:main:main", agent_id="main", now_ms=1, session_id="sid-main")
    create_session(db, key="agent:work:main", agent_id="work", now_ms=1)
    _use(db, "agent:main:main", "2026-11-23", 100, 0.5)
    _use(db, "agent:main:main", "2026-11-20", 50, 0.25, hour=2)
    _use(db, "agent:main:main", "2026-10-01", 1000, 5.0)  # outside the default 30 days
    _use(db, "agent:work:main", "2026-11-22", 10, 0.1, agent="work")
    return state


async def test_usage_status(ctx: MethodContext) -> None:
    assert await call(ctx, "usage.status") == {"updatedAt": NOW, "providers": []}
    await fails(
        ctx, "usage.status", {"x": 1}, "invalid usage.status params: at root: unexpected property 'x'"
    )


async def test_usage_cost_default_range(ctx: MethodContext, seeded: GatewayState) -> None:
    out = await call(ctx, "usage.cost")
    assert out["updatedAt"] == NOW
    assert out["days"] == 30
    # every day of the range is listed, zeros included (as OpenClaw does)
    assert len(out["daily"]) == 30
    assert (out["daily"][0]["date"], out["daily"][-1]["date"]) == ("2026-10-25", "2026-11-23")
    used = {d["date"]: d["totalTokens"] for d in out["daily"] if d["totalTokens"]}
    assert used == {"2026-11-20": 50, "2026-11-22": 10, "2026-11-23": 100}
    assert "startDate" not in out
    assert out["totals"]["totalTokens"] == 160
    assert out["totals"]["totalCost"] == 0.85
    assert set(out["daily"][0]) >= {
        "date",
        "input",
        "output",
        "cacheRead",
        "cacheWrite",
        "totalTokens",
        "totalCost",
        "inputCost",
        "outputCost",
        "cacheReadCost",
        "cacheWriteCost",
    }
    assert out["cacheStatus"]["status"] == "fresh"


async def test_usage_cost_ranges_and_agents(ctx: MethodContext, seeded: GatewayState) -> None:
    out = await call(ctx, "usage.cost", {"startDate": "2026-10-01", "endDate": "2026-11-20"})
    assert [d["date"] for d in out["daily"] if d["totalTokens"]] == ["2026-10-01", "2026-11-20"]
    assert out["days"] == len(out["daily"]) == 51
    assert [d["date"] for d in (await call(ctx, "usage.cost", {"range": "all"}))["daily"]] == [
        "2026-10-01",
        "2026-11-20",
        "2026-11-22",
        "2026-11-23",
    ]
    assert (await call(ctx, "usage.cost", {"days": 1}))["totals"]["totalTokens"] == 100
    assert (await call(ctx, "usage.cost", {"range": "7d"}))["totals"]["totalTokens"] == 160
    assert (await call(ctx, "usage.cost", {"range": "all"}))["totals"]["totalTokens"] == 1160
    assert (await call(ctx, "usage.cost", {"agentId": "work"}))["totals"]["totalTokens"] == 10
    assert (await call(ctx, "usage.cost", {"agentId": "work", "agentScope": "all"}))["totals"][
        "totalTokens"
    ] == 160
    # UTC+14: "today" is already 2026-11-24 there
    shifted = await call(ctx, "usage.cost", {"days": 1, "mode": "specific", "utcOffset": "UTC+14"})
    assert [d["date"] for d in shifted["daily"]] == ["2026-11-24"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"startDate": "2026-13-01", "endDate": "2026-12-01"},
            "invalid usage.cost params: at /startDate: not a calendar date (month must be in 1..12)",
        ),
        (
            {"startDate": "yesterday", "endDate": "2026-12-01"},
            'invalid usage.cost params: at /startDate: must match format "date" (YYYY-MM-DD)',
        ),
        ({"startDate": "2026-11-02"}, "startDate and endDate must be given together"),
        (
            {"startDate": "2026-11-05", "endDate": "2026-11-01"},
            "startDate (2026-11-05) is after endDate (2026-11-01)",
        ),
        ({"days": 0}, "invalid usage.cost params: at /days: must be >= 1"),
        ({"days": "7"}, "invalid usage.cost params: at /days: must be integer"),
        (
            {"range": "2w"},
            "invalid usage.cost params: at /range: must be equal to constant; at /range: must match a schema in anyOf",
        ),
        (
            {"mode": "specific"},
            'invalid usage.cost params: at /utcOffset: required when mode is "specific" (UTC+H, UTC-HH:MM)',
        ),
        (
            {"mode": "specific", "utcOffset": "UTC+15"},
            "invalid usage.cost params: at /utcOffset: must be between UTC-12 and UTC+14",
        ),
        (
            {"mode": "specific", "utcOffset": "GMT+1"},
            "invalid usage.cost params: at /utcOffset: must look like UTC+H, UTC-HH or UTC+H:MM",
        ),
        (
            {"agentScope": "mine"},
            "invalid usage.cost params: at /agentScope: must be equal to constant; "
            "at /agentScope: must match a schema in anyOf",
        ),
    ],
)
async def test_usage_cost_validation(ctx: MethodContext, params: dict[str, Any], message: str) -> None:
    await fails(ctx, "usage.cost", params, message)


async def test_sessions_usage(ctx: MethodContext, seeded: GatewayState) -> None:
    out = await call(ctx, "sessions.usage", {"startDate": "2026-11-01", "endDate": "2026-11-30"})
    assert [s["key"] for s in out["sessions"]] == ["agent:main:main", "agent:work:main"]
    main = out["sessions"][0]
    assert main["sessionId"] == "sid-main"
    assert main["usage"]["totalTokens"] == 150
    assert main["usage"]["durationMs"] == main["usage"]["lastActivity"] - main["usage"]["firstActivity"]
    assert out["totals"]["totalTokens"] == 160
    assert out["aggregates"]["byModel"][0]["count"] == 3
    assert out["aggregates"]["sessionCount"] == 2
    by_agent = {a["agentId"]: a["totals"]["totalTokens"] for a in out["aggregates"]["byAgent"]}
    assert by_agent == {"main": 150, "work": 10}
    assert out["aggregates"]["byProvider"][0]["provider"] == "openai"
    assert main["usage"]["messageCounts"] == {
        "total": 0,
        "user": 0,
        "assistant": 0,
        "toolCalls": 0,
        "toolResults": 0,
        "errors": 0,
    }
    assert (main["scope"], main["creatorKey"], main["hasContextWeight"]) == ("instance", '["unknown"]', False)
    assert out["creatorOptions"] == [{"key": '["unknown"]'}]
    only = await call(ctx, "sessions.usage", {"key": "main", "range": "all"})
    assert [s["key"] for s in only["sessions"]] == ["agent:main:main"]
    assert only["totals"]["totalTokens"] == 1150
    assert [d["date"] for d in only["aggregates"]["daily"]] == ["2026-10-01", "2026-11-20", "2026-11-23"]
    # a session without model calls is listed with usage null, and with a zero usage when asked for by key
    create_session(seeded.db, key="agent:main:quiet", agent_id="main", now_ms=NOW)
    listed = await call(ctx, "sessions.usage", {"days": 1})
    quiet = next(s for s in listed["sessions"] if s["key"] == "agent:main:quiet")
    assert quiet["usage"] is None
    alone = await call(ctx, "sessions.usage", {"key": "agent:main:quiet"})
    assert alone["sessions"][0]["usage"]["totalTokens"] == 0
    assert alone["aggregates"]["byAgent"][0]["agentId"] == "main"
    assert alone["aggregates"]["sessionCount"] == 0
    await fails(ctx, "sessions.usage", {"limit": 0}, "invalid sessions.usage params: at /limit: must be >= 1")


async def test_sessions_usage_timeseries_and_logs(ctx: MethodContext, seeded: GatewayState) -> None:
    series = await call(ctx, "sessions.usage.timeseries", {"key": "agent:main:main"})
    assert series["sessionId"] == "sid-main"
    assert [p["totalTokens"] for p in series["points"]] == [1000, 50, 100]
    assert series["points"][-1]["cumulativeTokens"] == 1150
    assert series["points"][-1]["cumulativeCost"] == 5.75
    ranged = await call(
        ctx, "sessions.usage.timeseries", {"key": "main", "startDate": "2026-11-01", "endDate": "2026-11-30"}
    )
    assert [p["totalTokens"] for p in ranged["points"]] == [50, 100]
    logs = await call(ctx, "sessions.usage.logs", {"key": "main", "limit": 2})
    assert [entry["tokens"] for entry in logs["logs"]] == [50, 100]
    assert logs["logs"][0]["model"] == "gpt-test"
    await fails(ctx, "sessions.usage.logs", {}, "key is required for logs")
    await fails(ctx, "sessions.usage.timeseries", {"key": ""}, "key is required for timeseries")
    await fails(ctx, "sessions.usage.timeseries", {}, "key is required for timeseries")
    assert await call(ctx, "sessions.usage.logs", {"key": "agent:main:ghost"}) == {"logs": []}
    assert await call(ctx, "sessions.usage.timeseries", {"key": "agent:main:ghost"}) == {"points": []}


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_names = sorted(
    {
        *sessions_methods._LIST_PARAMS,
        *sessions_methods._PATCH_PARAMS,
        "keys",
        "maxChars",
        "maxLines",
        "reason",
        "deleteTranscript",
        "sessionId",
        "cursor",
        "beforeSeq",
        "startDate",
        "endDate",
        "days",
        "range",
        "mode",
        "utcOffset",
        "agentScope",
    }
)
_params = st.one_of(
    st.dictionaries(st.sampled_from(_names), _json, max_size=5),
    st.dictionaries(
        st.sampled_from(["key", "sessionKey"]),
        st.sampled_from(["main", "agent:main:subagent:x", "global"]),
        min_size=1,
    ).flatmap(
        lambda base: st.dictionaries(st.sampled_from(_names), _json, max_size=4).map(
            lambda extra: {**extra, **base}
        )
    ),
    _json,
)
_methods = sorted({*sessions_methods.table.methods, *usage_methods.table.methods})


def test_fuzzed_params_only_raise_appliance_errors(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Whatever a peer sends, a handler answers or raises an ApplianceError (never crashes the connection)."""
    db = open_database(tmp_path_factory.mktemp("fuzz") / "fuzz.db")
    state = GatewayState(settings=Settings(), db=db, wall_ms=lambda: NOW)
    ctx = _ctx(state)

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(_methods), _params)
    def run(method: str, params: Any) -> None:
        async def once() -> None:
            with trio.fail_after(5):
                try:
                    await call(ctx, method, params)
                except ApplianceError as exc:
                    wire = exc.to_wire()
                else:
                    return
            assert wire["code"] in {"INVALID_REQUEST", "UNAVAILABLE"}
            assert wire["message"]

        trio.run(once)

    try:
        run()
    finally:
        db.close()
