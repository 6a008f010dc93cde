"""``usage.status``, ``usage.cost`` and ``sessions.usage`` (+ ``.timeseries``, ``.logs``).

Rules:
- date ranges follow OpenClaw's ``parseDateRange``: ``startDate``+``endDate`` (inclusive ``YYYY-MM-DD``),
  else ``range`` (``7d|30d|90d|1y|all``), else ``days`` (>= 1), else the last 30 days ending today;
- ``mode:"specific"`` with ``utcOffset:"UTC+H[:MM]"`` moves "today"; stored days are UTC days;
- params are validated strictly (see :class:`~appliance.gateway.methods.sessions.Params`), a bad date is
  INVALID_REQUEST, never a crash;
- costs are rounded to 6 decimals on the wire.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from appliance.errors import InvalidRequest
from appliance.gateway.dispatch import MethodContext, MethodTable
from appliance.models.convert import Params
from appliance.models.session_keys import normalise_session_key
from appliance.models.sessions import (
    SessionRecord,
    UsageDay,
    UsageTotals,
    usage_day_to_wire,
    usage_totals_to_wire,
)
from appliance.store import (
    SessionFilter,
    count_messages_by_role,
    get_session,
    list_sessions,
    usage_by_model,
    usage_by_session,
    usage_daily,
    usage_logs,
    usage_totals,
)

__all__ = ["DateRange", "parse_date_range", "table"]

table = MethodTable()

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_OFFSET = re.compile(r"^UTC([+-])(\d{1,2})(?::([0-5]\d))?$")
_RANGES = {"7d": 7, "30d": 30, "90d": 90, "1y": 365}
_RANGE_PARAMS = ("startDate", "endDate", "days", "range", "mode", "utcOffset", "timeZone")
DEFAULT_DAYS = 30


class DateRange:
    """An inclusive range of UTC day strings."""

    __slots__ = ("days", "end", "start")

    def __init__(self, start: str | None, end: str, days: int) -> None:
        self.start = start
        self.end = end
        self.days = days


def _parse_date(p: Params, name: str) -> dt.date | None:
    raw = p.string(name)
    if raw is None:
        return None
    m = _DATE.match(raw.strip())
    if not m:
        raise p.fail(name, 'must match format "date" (YYYY-MM-DD)')
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError as exc:
        raise p.fail(name, f"not a calendar date ({exc})") from exc


def _offset_minutes(p: Params) -> int:
    mode = p.choice("mode", ("utc", "gateway", "specific"), default="utc")
    raw = p.string("utcOffset")
    p.string("timeZone")
    if mode != "specific":
        return 0
    if raw is None:
        raise p.fail("utcOffset", 'required when mode is "specific" (UTC+H, UTC-HH:MM)')
    m = _OFFSET.match(raw.strip())
    if not m:
        raise p.fail("utcOffset", "must look like UTC+H, UTC-HH or UTC+H:MM")
    hours, minutes = int(m.group(2)), int(m.group(3) or 0)
    total = (1 if m.group(1) == "+" else -1) * (hours * 60 + minutes)
    if hours > 14 or total < -12 * 60 or total > 14 * 60:
        raise p.fail("utcOffset", "must be between UTC-12 and UTC+14")
    return total


def parse_date_range(p: Params, now_ms: int) -> DateRange:
    """Read the range params of ``p`` (see the module rules); raises ValidationFailed."""
    offset = _offset_minutes(p)
    today = (dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC) + dt.timedelta(minutes=offset)).date()
    start = _parse_date(p, "startDate")
    end = _parse_date(p, "endDate")
    rng = p.choice("range", ("7d", "30d", "90d", "1y", "all"))
    days = p.integer("days", minimum=1, maximum=3660)
    if (start is None) != (end is None):
        raise InvalidRequest(
            "startDate and endDate must be given together",
            details={
                "errors": [{"path": "/startDate" if start is None else "/endDate", "message": "missing"}]
            },
        )
    if start is not None and end is not None:
        if start > end:
            raise InvalidRequest(
                f"startDate ({start.isoformat()}) is after endDate ({end.isoformat()})",
                details={"startDate": start.isoformat(), "endDate": end.isoformat()},
            )
        return DateRange(start.isoformat(), end.isoformat(), (end - start).days + 1)
    if rng == "all":
        return DateRange(None, today.isoformat(), 0)
    if rng is not None:
        days = _RANGES[rng]
    if days is None:
        days = DEFAULT_DAYS
    first = today - dt.timedelta(days=days - 1)
    return DateRange(first.isoformat(), today.isoformat(), days)


def _agent(p: Params) -> str | None:
    agent_id = p.non_empty("agentId")
    scope = p.choice("agentScope", ("all", "agent"))
    if scope == "all":
        return None
    return agent_id.strip().lower() if agent_id else None


def _cache_status(now: int) -> dict[str, Any]:
    # usage is summed from the database on each call: always fresh, no files involved
    return {"status": "fresh", "cachedFiles": 0, "pendingFiles": 0, "staleFiles": 0, "refreshedAt": now}


@table.method("usage.status")
async def usage_status(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    """Provider quota windows; the appliance tracks none, so the list is empty (as OpenClaw's is offline)."""
    Params("usage.status", params, ())
    return {"updatedAt": ctx.state.wall_ms(), "providers": []}


def _day_range(start: str, end: str) -> list[str]:
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _day_start_ms(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp() * 1000)


@table.method("usage.cost")
async def usage_cost(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    """Token and cost totals per day; every day of a bounded range is listed, zeros included."""
    p = Params("usage.cost", params, (*_RANGE_PARAMS, "agentId", "agentScope"))
    now = ctx.state.wall_ms()
    rng = parse_date_range(p, now)
    agent_id = _agent(p)
    db = ctx.state.db
    found = {d.date: d for d in usage_daily(db, rng.start, rng.end, agent_id=agent_id)}
    days = _day_range(rng.start, rng.end) if rng.start is not None else sorted(found)
    daily = [usage_day_to_wire(found.get(day) or UsageDay(day, UsageTotals())) for day in days]
    totals = usage_totals(db, rng.start, rng.end, agent_id=agent_id)
    return {
        "updatedAt": now,
        "days": rng.days if rng.days else len(daily),
        "daily": daily,
        "totals": usage_totals_to_wire(totals),
        "cacheStatus": _cache_status(now),
    }


_MESSAGE_ROLES = (("user", "user"), ("assistant", "assistant"), ("toolResults", "tool"))


def _message_counts(counts: dict[str, int]) -> dict[str, int]:
    out = {
        "total": sum(counts.values()),
        "user": 0,
        "assistant": 0,
        "toolCalls": 0,
        "toolResults": 0,
        "errors": 0,
    }
    for wire, role in _MESSAGE_ROLES:
        out[wire] = counts.get(role, 0)
    return out


def _session_usage(
    t: UsageTotals, first: int | None, last: int | None, *, session_id: str | None, counts: dict[str, int]
) -> dict[str, Any]:
    out = usage_totals_to_wire(t)
    if first is not None and last is not None:
        out.update({"firstActivity": first, "lastActivity": last, "durationMs": max(0, last - first)})
    if session_id is not None:
        out["sessionId"] = session_id
    out["messageCounts"] = _message_counts(counts)
    return out


def _session_entry(rec: SessionRecord | None, key: str, agent_id: str, updated_at: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "key": key,
        "label": rec.label if rec else None,
        "sessionId": rec.session_id if rec else None,
        "scope": "instance",
        "updatedAt": rec.updated_at if rec else updated_at,
        "agentId": agent_id,
        "creatorKey": _CREATOR_KEY,
    }
    if rec is not None:
        entry["modelOverride"] = rec.overrides.get("modelOverride")
        entry["providerOverride"] = rec.overrides.get("providerOverride")
    return {k: v for k, v in entry.items() if v is not None}


_CREATOR_KEY = '["unknown"]'


@table.method("sessions.usage")
async def sessions_usage(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    """Per-session usage in a date range (sessions active in the range, with or without model calls)."""
    p = Params(
        "sessions.usage",
        params,
        (*_RANGE_PARAMS, "key", "agentId", "agentScope", "limit", "includeContextWeight", "groupBy"),
    )
    now = ctx.state.wall_ms()
    rng = parse_date_range(p, now)
    agent_id = _agent(p)
    limit = p.integer("limit", default=1000, minimum=1, maximum=10_000) or 1000
    p.boolean("includeContextWeight")
    p.choice("groupBy", ("instance", "family"))
    key_raw = p.non_empty("key")
    db = ctx.state.db
    only_key = str(normalise_session_key(key_raw)) if key_raw else None

    used = {
        k: (a, t, first, last)
        for k, a, t, first, last in usage_by_session(db, rng.start, rng.end, agent_id=agent_id)
    }
    start_ms = _day_start_ms(rng.start) if rng.start is not None else None
    end_ms = _day_start_ms(rng.end) + 86_400_000 - 1
    if only_key is not None:
        rec_only = get_session(db, only_key)
        candidates = [rec_only] if rec_only is not None else []
    else:
        listed, _ = list_sessions(
            db,
            SessionFilter(
                agent_id=agent_id,
                include_global=True,
                include_unknown=True,
                include_archived=True,
                active_since_ms=start_ms,
                limit=limit,
            ),
        )
        candidates = [r for r in listed if r.updated_at <= end_ms]
    sessions: list[dict[str, Any]] = []
    seen: set[str] = set()
    for rec in candidates:
        seen.add(rec.key)
        entry = _session_entry(rec, rec.key, rec.agent_id, rec.updated_at)
        hit = used.get(rec.key)
        if hit is not None or only_key is not None:
            totals, first, last = (hit[1], hit[2], hit[3]) if hit else (UsageTotals(), None, None)
            counts = count_messages_by_role(db, rec.key, rec.session_id)
            entry["usage"] = _session_usage(totals, first, last, session_id=rec.session_id, counts=counts)
        else:
            entry["usage"] = None
        entry["hasContextWeight"] = False
        sessions.append(entry)
    for key, (row_agent, totals, first, last) in used.items():
        if key in seen or (only_key is not None and key != only_key) or len(sessions) >= limit:
            continue  # usage of a deleted session still counts
        entry = _session_entry(None, key, row_agent, last)
        entry["usage"] = _session_usage(totals, first, last, session_id=None, counts={})
        entry["hasContextWeight"] = False
        sessions.append(entry)

    totals = usage_totals(db, rng.start, rng.end, agent_id=agent_id, session_key=only_key)
    models = usage_by_model(db, rng.start, rng.end, agent_id=agent_id, session_key=only_key)
    by_provider: dict[str, UsageTotals] = {}
    provider_calls: dict[str, int] = {}
    for prov, _model, t in models:
        by_provider[prov] = _add(by_provider.get(prov, UsageTotals()), t)
        provider_calls[prov] = provider_calls.get(prov, 0) + t.calls
    agents: dict[str, UsageTotals] = {}
    for key, (row_agent, t, _f, _l) in used.items():
        if only_key is None or key == only_key:
            agents[row_agent] = _add(agents.get(row_agent, UsageTotals()), t)
    if only_key is not None and not agents and candidates:
        agents[candidates[0].agent_id] = UsageTotals()
    daily = usage_daily(db, rng.start, rng.end, agent_id=agent_id, session_key=only_key)
    message_totals = _message_counts({})
    for entry in sessions:
        usage = entry.get("usage")
        if usage:
            for name, value in usage["messageCounts"].items():
                message_totals[name] += value
    return {
        "updatedAt": now,
        "startDate": rng.start,
        "endDate": rng.end,
        "sessions": sessions,
        "totals": usage_totals_to_wire(totals),
        "aggregates": {
            "sessionCount": sum(1 for key in used if only_key is None or key == only_key),
            "messages": message_totals,
            "tools": {"totalCalls": 0, "uniqueTools": 0, "tools": []},
            "byModel": [
                {"provider": prov, "model": model, "count": t.calls, "totals": usage_totals_to_wire(t)}
                for prov, model, t in models
            ],
            "byProvider": [
                {"provider": prov, "count": provider_calls[prov], "totals": usage_totals_to_wire(t)}
                for prov, t in sorted(by_provider.items())
            ],
            "byAgent": [{"agentId": a, "totals": usage_totals_to_wire(t)} for a, t in sorted(agents.items())],
            "byChannel": [],
            "byCreator": [],
            "costDaily": [{"date": d.date, **usage_totals_to_wire(d.totals)} for d in daily],
            "dailyLatency": [],
            "modelDaily": [],
            "daily": [
                {"date": d.date, "tokens": d.totals.total, "cost": round(d.totals.total_cost, 6)}
                for d in daily
            ],
        },
        "creatorOptions": [{"key": _CREATOR_KEY}],
        "cacheStatus": _cache_status(now),
    }


def _add(a: UsageTotals, b: UsageTotals) -> UsageTotals:
    return UsageTotals(
        input=a.input + b.input,
        output=a.output + b.output,
        cache_read=a.cache_read + b.cache_read,
        cache_write=a.cache_write + b.cache_write,
        total=a.total + b.total,
        input_cost=a.input_cost + b.input_cost,
        output_cost=a.output_cost + b.output_cost,
        cache_read_cost=a.cache_read_cost + b.cache_read_cost,
        cache_write_cost=a.cache_write_cost + b.cache_write_cost,
        total_cost=a.total_cost + b.total_cost,
        calls=a.calls + b.calls,
    )


def _key_param(p: Params, what: str) -> str:
    raw = p.string("key")
    if raw is None or not raw.strip():
        raise InvalidRequest(f"key is required for {what}")
    return str(normalise_session_key(raw))


def _optional_range(p: Params, now: int) -> DateRange | None:
    if any(p.has(n) for n in ("startDate", "endDate", "days", "range")):
        return parse_date_range(p, now)
    return None


@table.method("sessions.usage.timeseries")
async def sessions_usage_timeseries(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    """One point per model call of the session, with running totals."""
    p = Params("sessions.usage.timeseries", params, (*_RANGE_PARAMS, "key", "limit"))
    key = _key_param(p, "timeseries")
    rng = _optional_range(p, ctx.state.wall_ms())
    limit = p.integer("limit", default=1000, minimum=1, maximum=10_000) or 1000
    db = ctx.state.db
    rec = get_session(db, key)
    logs = usage_logs(db, key, rng.start if rng else None, rng.end if rng else None, limit=limit)
    points: list[dict[str, Any]] = []
    cum_tokens = 0
    cum_cost = 0.0
    for r in logs:
        cum_tokens += r.total
        cum_cost += r.total_cost
        points.append(
            {
                "timestamp": r.ts,
                "input": r.input,
                "output": r.output,
                "cacheRead": r.cache_read,
                "cacheWrite": r.cache_write,
                "totalTokens": r.total,
                "cost": round(r.total_cost, 6),
                "cumulativeTokens": cum_tokens,
                "cumulativeCost": round(cum_cost, 6),
            }
        )
    out: dict[str, Any] = {"sessionId": rec.session_id if rec else None, "points": points}
    return {k: v for k, v in out.items() if v is not None}


@table.method("sessions.usage.logs")
async def sessions_usage_logs(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
    """The session's model calls, oldest first (the newest ``limit``)."""
    p = Params("sessions.usage.logs", params, (*_RANGE_PARAMS, "key", "limit"))
    key = _key_param(p, "logs")
    rng = _optional_range(p, ctx.state.wall_ms())
    limit = p.integer("limit", default=200, minimum=1, maximum=10_000) or 200
    logs = usage_logs(ctx.state.db, key, rng.start if rng else None, rng.end if rng else None, limit=limit)
    return {
        "logs": [
            {
                "timestamp": r.ts,
                "role": "assistant",
                "provider": r.provider,
                "model": r.model,
                "sessionId": r.session_id,
                "tokens": r.total,
                "input": r.input,
                "output": r.output,
                "cacheRead": r.cache_read,
                "cacheWrite": r.cache_write,
                "cost": round(r.total_cost, 6),
            }
            for r in logs
        ],
    }
