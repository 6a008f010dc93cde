"""System methods (health, status, system-presence, last-heartbeat) called directly, with a fake store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from appliance.config.settings import Settings
from appliance.errors import ValidationFailed
from appliance.gateway.dispatch import MethodContext, MethodTable
from appliance.gateway.methods import system
from appliance.gateway.state import EncodedEvent, GatewayState

NOW_MS = 1_795_420_774_708


@attrs.define
class FakeDb:
    path: str = "/data/appliance.sqlite3"


@attrs.define
class FakeQueries:
    """The two store functions health uses (``appliance.store.queries.sessions``)."""

    count: int = 2
    rows: list[dict[str, Any]] = attrs.Factory(
        lambda: [
            {"key": "agent:main:main", "sessionId": "s1", "updatedAt": NOW_MS - 5_000},
            {"key": "agent:main:test1", "sessionId": "s2", "updatedAt": NOW_MS - 60_000, "label": "t"},
        ]
    )
    fail: bool = False
    calls: list[tuple[str, Any]] = attrs.Factory(list)

    def count_sessions(self, db: Any) -> int:
        self.calls.append(("count", db))
        if self.fail:
            raise RuntimeError("database is locked")
        return self.count

    def recent_sessions(self, db: Any, limit: int = 5) -> list[dict[str, Any]]:
        self.calls.append(("recent", limit))
        return self.rows[:limit]


@attrs.define
class Sink:
    frames: list[dict[str, Any]] = attrs.Factory(list)

    def deliver(self, event: str, encoded: EncodedEvent, *, drop_if_slow: bool = False) -> None:
        frame = {"event": event, "payload": json.loads(encoded.payload_json), "dropIfSlow": drop_if_slow}
        if encoded.state_version_json is not None:
            frame["stateVersion"] = json.loads(encoded.state_version_json)
        self.frames.append(frame)


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> FakeQueries:
    fake = FakeQueries()
    monkeypatch.setattr(system, "load_session_queries", lambda: fake)
    return fake


def make_state() -> GatewayState:
    clock = iter(range(10_000))
    return GatewayState(
        settings=Settings(),
        db=FakeDb(),  # type: ignore[arg-type]
        wall_ms=lambda: NOW_MS,
        monotonic=lambda: 100.0 + next(clock) * 0.001,
        hostname="board",
        boot_id="boot-1",
    )


def make_ctx(state: GatewayState, scopes: tuple[str, ...] = ("operator.read",)) -> MethodContext:
    async def emit(event: str, payload: Any) -> None:
        raise AssertionError("system methods broadcast, they do not emit")

    return MethodContext(state=state, conn_id="c1", req_id="r1", scopes=frozenset(scopes), emit=emit)


async def call(
    table: MethodTable, name: str, ctx: MethodContext, params: dict[str, Any] | None = None
) -> Any:
    spec = table.resolve(name, ctx.scopes)
    result = await spec.handler(ctx, params or {})
    json.dumps(result, allow_nan=False)  # every answer is JSON
    return result


#: keys the appliance adds to OpenClaw's status (clients ignore unknown keys)
STATUS_EXTENSIONS = {"queue", "integrity", "plugins"}
STATUS_KEYS = STATUS_EXTENSIONS | {
    "runtimeVersion",
    "hostDesktop",
    "heartbeat",
    "channelSummary",
    "queuedSystemEvents",
    "degradedSecretOwners",
    "degradedPlugins",
    "tasks",
    "taskAudit",
    "sessions",
    "modelRuntime",
    "eventLoop",
    "processMemory",
    "workerPools",
    "pid",
    "shutdownBudget",
}
HEALTH_KEYS = {
    "ok",
    "ts",
    "durationMs",
    "plugins",
    "configReload",
    "channels",
    "channelOrder",
    "channelLabels",
    "heartbeatSeconds",
    "defaultAgentId",
    "agents",
    "sessions",
    "modelRuntime",
    "eventLoop",
}


async def test_health_has_the_openclaw_shape(queries: FakeQueries) -> None:
    state = make_state()
    payload = await call(system.table, "health", make_ctx(state))
    assert set(payload) == HEALTH_KEYS
    assert payload["ok"] is True
    assert payload["ts"] == NOW_MS
    assert isinstance(payload["durationMs"], int)
    assert payload["channels"] == {}
    assert payload["channelOrder"] == []
    assert payload["channelLabels"] == {}
    assert payload["defaultAgentId"] == "main"
    sessions = payload["sessions"]
    assert sessions["path"] == "/data/appliance.sqlite3"
    assert sessions["count"] == 2
    assert sessions["recent"][0] == {"key": "agent:main:main", "updatedAt": NOW_MS - 5_000, "age": 5_000}
    (agent,) = payload["agents"]
    assert agent["agentId"] == "main"
    assert agent["isDefault"] is True
    assert set(agent["heartbeat"]) == {"enabled", "every", "everyMs", "prompt", "target", "ackMaxChars"}
    assert agent["sessions"] == sessions
    assert payload["modelRuntime"] == {"degraded": False, "pendingAgents": []}
    assert {"degraded", "intervalMs", "delayP99Ms", "delayMaxMs", "utilization"} <= set(payload["eventLoop"])
    assert ("recent", 5) in queries.calls


async def test_health_broadcasts_a_health_event_with_state_version(queries: FakeQueries) -> None:
    state = make_state()
    sink_a, sink_b = Sink(), Sink()
    state.broadcasters.update({"a": sink_a, "b": sink_b})
    before = state.health_version
    payload = await call(system.table, "health", make_ctx(state))
    assert state.health_version == before + 1
    assert state.health_cache == payload
    for sink in (sink_a, sink_b):
        (frame,) = sink.frames
        assert frame["event"] == "health"
        assert frame["payload"] == payload
        assert frame["stateVersion"] == {"presence": state.presence_version, "health": state.health_version}
        assert frame["dropIfSlow"] is True


async def test_health_accepts_probe_and_rejects_other_params(queries: FakeQueries) -> None:
    state = make_state()
    await call(system.table, "health", make_ctx(state), {"probe": True})
    with pytest.raises(ValidationFailed) as info:
        await call(system.table, "health", make_ctx(state), {"probe": "yes", "bogus": 1})
    assert info.value.message == (
        "invalid health params: at /probe: must be boolean; at root: must NOT have additional properties ('bogus')"
    )
    assert info.value.details is not None
    assert [e["path"] for e in info.value.details["errors"]] == ["/probe", ""]


async def test_a_failing_store_degrades_sessions_but_health_answers(queries: FakeQueries) -> None:
    queries.fail = True
    payload = await call(system.table, "health", make_ctx(make_state()))
    assert payload["ok"] is True
    assert payload["sessions"]["count"] == 0
    assert payload["sessions"]["recent"] == []


async def test_health_without_a_store_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "load_session_queries", lambda: None)
    payload = await call(system.table, "health", make_ctx(make_state()))
    assert payload["sessions"]["count"] == 0


def test_the_real_store_module_satisfies_the_two_function_contract() -> None:
    queries = system.load_session_queries()
    assert queries is not None
    assert callable(queries.count_sessions)
    assert callable(queries.recent_sessions)


async def test_status_redacts_the_store_path_for_non_admins(queries: FakeQueries) -> None:
    state = make_state()
    public = await call(system.table, "status", make_ctx(state))
    assert set(public) == STATUS_KEYS
    assert public["sessions"]["count"] == 2
    assert public["sessions"]["paths"] == []
    assert public["sessions"]["byAgent"][0]["path"] == "[redacted]"
    assert isinstance(public["pid"], int)
    assert set(public["processMemory"]) == {"rssBytes", "peakRssBytes"}
    assert public["tasks"]["byStatus"]["queued"] == 0
    admin = await call(system.table, "status", make_ctx(state, ("operator.admin",)))
    assert admin["sessions"]["paths"] == ["/data/appliance.sqlite3"]
    assert admin["sessions"]["byAgent"][0]["path"] == "/data/appliance.sqlite3"


async def test_status_rejects_unknown_params(queries: FakeQueries) -> None:
    with pytest.raises(ValidationFailed, match="invalid status params"):
        await call(system.table, "status", make_ctx(make_state()), {"nope": 1})


async def test_system_presence_lists_the_gateway_itself_first() -> None:
    state = make_state()
    state.presence["c9"] = {"host": "webchat", "mode": "webchat", "reason": "connect"}
    entries = await call(system.table, "system-presence", make_ctx(state))
    me = entries[0]
    assert me["mode"] == "gateway"
    assert me["reason"] == "self"
    assert me["host"] == "board"
    assert me["version"] == state.version
    assert me["ts"] == NOW_MS
    assert {"platform", "deviceFamily", "instanceId", "text"} <= set(me)
    assert entries[1]["host"] == "webchat"


async def test_last_heartbeat_is_null_until_one_ran() -> None:
    state = make_state()
    assert await call(system.table, "last-heartbeat", make_ctx(state)) is None
    state.last_heartbeat = {"ts": 1, "status": "ok"}
    assert await call(system.table, "last-heartbeat", make_ctx(state)) == {"ts": 1, "status": "ok"}
    with pytest.raises(ValidationFailed):
        await call(system.table, "last-heartbeat", make_ctx(state), {"x": 1})


def test_methods_need_operator_read_and_are_advertised() -> None:
    from appliance.errors import MissingScope

    assert system.table.advertised() == ["health", "last-heartbeat", "status", "system-presence"]
    for name in system.table.advertised():
        with pytest.raises(MissingScope):
            system.table.resolve(name, frozenset({"operator.pairing"}))
        system.table.resolve(name, frozenset({"operator.write"}))


def test_snapshot_reuses_cached_health_and_carries_session_defaults(queries: FakeQueries) -> None:
    state = make_state()
    snap = system.build_snapshot(state)
    assert snap["sessionDefaults"] == {
        "defaultAgentId": "main",
        "modelConfigured": False,
        "ownership": "sole",
        "selectionRequired": False,
        "mainKey": "main",
        "mainSessionKey": "agent:main:main",
        "scope": "per-sender",
    }
    assert snap["health"]["ok"] is True
    assert snap["stateVersion"] == {"presence": 1, "health": 1}
    assert snap["presence"][0]["reason"] == "self"
    assert isinstance(snap["uptimeMs"], int)
    calls = len(queries.calls)
    again = system.build_snapshot(state)
    assert again["health"] is snap["health"]
    assert len(queries.calls) == calls


# ------------------------------------------------------------------------------------------------ golden

GOLDEN = Path(__file__).resolve().parents[1] / "integration" / "golden"


def golden_payload(name: str) -> dict[str, Any]:
    path = GOLDEN / f"{name}.json"
    if not path.exists():
        pytest.skip(f"no golden capture {path.name} yet")
    payload: dict[str, Any] = json.loads(path.read_text())["cases"][0]["response"]["payload"]
    return payload


def key_tree(value: Any, depth: int = 3) -> Any:
    """The nested key structure of a payload (values and list contents ignored)."""
    if isinstance(value, dict) and depth:
        return {k: key_tree(v, depth - 1) for k, v in value.items()}
    return None


async def test_health_has_the_keys_of_the_real_gateways_health(queries: FakeQueries) -> None:
    real = golden_payload("health")
    ours = await call(system.table, "health", make_ctx(make_state()))
    assert key_tree(ours) == key_tree(real)
    assert set(ours["agents"][0]) == set(real["agents"][0])
    assert set(ours["agents"][0]["heartbeat"]) == set(real["agents"][0]["heartbeat"])


async def test_status_has_the_top_level_keys_of_the_real_gateways_status(queries: FakeQueries) -> None:
    real = golden_payload("status")
    ours = await call(system.table, "status", make_ctx(make_state()))
    assert set(ours) == set(real) | STATUS_EXTENSIONS
    assert set(ours["sessions"]) == set(real["sessions"])
    assert set(ours["tasks"]) == set(real["tasks"])
    assert set(ours["taskAudit"]) == set(real["taskAudit"])
    assert set(ours["eventLoop"]) == set(real["eventLoop"])


async def test_other_connections_get_at_most_one_health_broadcast_per_interval(queries: FakeQueries) -> None:
    state = make_state()  # its monotonic clock advances 1 ms per reading
    caller, other = Sink(), Sink()
    state.broadcasters.update({"c1": caller, "other": other})
    for _ in range(5):
        await call(system.table, "health", make_ctx(state))
    assert len(caller.frames) == 5  # the caller always sees its event before the response
    assert len(other.frames) == 1
    assert [f["stateVersion"]["health"] for f in caller.frames] == [1, 2, 3, 4, 5]
