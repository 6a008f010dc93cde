"""Typed queries on the ``usage`` table: one row per model call, summed per day, session or model.

Days are UTC ``YYYY-MM-DD`` strings chosen by the caller when recording, so ranges compare as text.
Recording also adds the call's tokens and cost to the session's counters, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from appliance.models.sessions import UsageDay, UsageRecord, UsageTotals
from appliance.store.db import Database

__all__ = [
    "record_usage",
    "usage_by_model",
    "usage_by_session",
    "usage_daily",
    "usage_logs",
    "usage_totals",
]

_SUMS = (
    "coalesce(sum(input_tokens), 0) AS input, coalesce(sum(output_tokens), 0) AS output, "
    "coalesce(sum(cache_read_tokens), 0) AS cache_read, coalesce(sum(cache_write_tokens), 0) AS cache_write, "
    "coalesce(sum(total_tokens), 0) AS total, coalesce(sum(input_cost), 0) AS input_cost, "
    "coalesce(sum(output_cost), 0) AS output_cost, coalesce(sum(cache_read_cost), 0) AS cache_read_cost, "
    "coalesce(sum(cache_write_cost), 0) AS cache_write_cost, coalesce(sum(total_cost), 0) AS total_cost, "
    "count(*) AS calls"
)


def _totals(row: Mapping[str, Any]) -> UsageTotals:
    return UsageTotals(
        input=int(row["input"]),
        output=int(row["output"]),
        cache_read=int(row["cache_read"]),
        cache_write=int(row["cache_write"]),
        total=int(row["total"]),
        input_cost=float(row["input_cost"]),
        output_cost=float(row["output_cost"]),
        cache_read_cost=float(row["cache_read_cost"]),
        cache_write_cost=float(row["cache_write_cost"]),
        total_cost=float(row["total_cost"]),
        calls=int(row["calls"]),
    )


def record_usage(db: Database, rec: UsageRecord) -> None:
    """Store one call's usage and add it to its session's token counters."""
    with db.transaction():
        db.execute(
            "INSERT INTO usage (session_key, session_id, agent_id, ts, day, provider, model, input_tokens, "
            "output_tokens, cache_read_tokens, cache_write_tokens, total_tokens, input_cost, output_cost, "
            "cache_read_cost, cache_write_cost, total_cost) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                rec.session_key,
                rec.session_id,
                rec.agent_id,
                rec.ts,
                rec.day,
                rec.provider,
                rec.model,
                rec.input,
                rec.output,
                rec.cache_read,
                rec.cache_write,
                rec.total,
                rec.input_cost,
                rec.output_cost,
                rec.cache_read_cost,
                rec.cache_write_cost,
                rec.total_cost,
            ),
        )
        if rec.session_key is not None:
            db.execute(
                "UPDATE sessions SET input_tokens = input_tokens + ?, output_tokens = output_tokens + ?, "
                "cache_read_tokens = cache_read_tokens + ?, cache_write_tokens = cache_write_tokens + ?, "
                "total_tokens = total_tokens + ?, cost_usd = cost_usd + ?, model_provider = ?, model = ?, "
                "updated_at = max(updated_at, ?) WHERE key = ? AND (? IS NULL OR session_id = ?)",
                (
                    rec.input,
                    rec.output,
                    rec.cache_read,
                    rec.cache_write,
                    rec.total,
                    rec.total_cost,
                    rec.provider,
                    rec.model,
                    rec.ts,
                    rec.session_key,
                    rec.session_id,
                    rec.session_id,
                ),
            )


def _where(
    start_day: str | None,
    end_day: str | None,
    agent_id: str | None,
    session_key: str | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if start_day is not None:
        clauses.append("day >= ?")
        args.append(start_day)
    if end_day is not None:
        clauses.append("day <= ?")
        args.append(end_day)
    if agent_id is not None:
        clauses.append("agent_id = ?")
        args.append(agent_id)
    if session_key is not None:
        clauses.append("session_key = ?")
        args.append(session_key)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), args


def usage_daily(
    db: Database,
    start_day: str | None = None,
    end_day: str | None = None,
    *,
    agent_id: str | None = None,
    session_key: str | None = None,
) -> list[UsageDay]:
    """Per-day sums in the inclusive range, oldest first (days without calls are absent)."""
    where, args = _where(start_day, end_day, agent_id, session_key)
    rows = db.query(f"SELECT day, {_SUMS} FROM usage {where} GROUP BY day ORDER BY day", args)
    return [UsageDay(date=r["day"], totals=_totals(r)) for r in rows]


def usage_totals(
    db: Database,
    start_day: str | None = None,
    end_day: str | None = None,
    *,
    agent_id: str | None = None,
    session_key: str | None = None,
) -> UsageTotals:
    where, args = _where(start_day, end_day, agent_id, session_key)
    row = db.query_one(f"SELECT {_SUMS} FROM usage {where}", args)
    return _totals(row) if row else UsageTotals()


def usage_by_session(
    db: Database,
    start_day: str | None = None,
    end_day: str | None = None,
    *,
    agent_id: str | None = None,
    limit: int = 1000,
) -> list[tuple[str, str, UsageTotals, int, int]]:
    """``(sessionKey, agentId, totals, firstTs, lastTs)`` per session, costliest first."""
    where, args = _where(start_day, end_day, agent_id)
    extra = "session_key IS NOT NULL"
    where = f"{where} AND {extra}" if where else f"WHERE {extra}"
    rows = db.query(
        f"SELECT session_key, max(agent_id) AS agent_id, min(ts) AS first_ts, max(ts) AS last_ts, {_SUMS} "
        f"FROM usage {where} GROUP BY session_key ORDER BY total_cost DESC, total DESC, session_key LIMIT ?",
        [*args, limit],
    )
    return [
        (r["session_key"], r["agent_id"], _totals(r), int(r["first_ts"]), int(r["last_ts"])) for r in rows
    ]


def usage_by_model(
    db: Database,
    start_day: str | None = None,
    end_day: str | None = None,
    *,
    agent_id: str | None = None,
    session_key: str | None = None,
) -> list[tuple[str, str, UsageTotals]]:
    """``(provider, model, totals)`` per model in the range."""
    where, args = _where(start_day, end_day, agent_id, session_key)
    rows = db.query(
        f"SELECT provider, model, {_SUMS} FROM usage {where} GROUP BY provider, model ORDER BY provider, model",
        args,
    )
    return [(r["provider"], r["model"], _totals(r)) for r in rows]


def usage_logs(
    db: Database,
    session_key: str,
    start_day: str | None = None,
    end_day: str | None = None,
    *,
    limit: int = 200,
) -> list[UsageRecord]:
    """The session's individual calls in the range, oldest first (the newest ``limit``)."""
    where, args = _where(start_day, end_day, None, session_key)
    rows = db.query(
        f"SELECT * FROM (SELECT * FROM usage {where} ORDER BY ts DESC, id DESC LIMIT ?) ORDER BY ts, id",
        [*args, limit],
    )
    return [
        UsageRecord(
            agent_id=r["agent_id"],
            ts=r["ts"],
            day=r["day"],
            provider=r["provider"],
            model=r["model"],
            session_key=r["session_key"],
            session_id=r["session_id"],
            input=r["input_tokens"],
            output=r["output_tokens"],
            cache_read=r["cache_read_tokens"],
            cache_write=r["cache_write_tokens"],
            total=r["total_tokens"],
            input_cost=r["input_cost"],
            output_cost=r["output_cost"],
            cache_read_cost=r["cache_read_cost"],
            cache_write_cost=r["cache_write_cost"],
            total_cost=r["total_cost"],
        )
        for r in rows
    ]
