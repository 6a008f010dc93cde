"""Typed queries on the ``sessions`` table.

Every function takes the :class:`~appliance.store.db.Database` first and returns models from
:mod:`appliance.models.sessions`. Writes commit before returning (autocommit or their own transaction).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from appliance.models.sessions import SessionRecord, TokenCounters
from appliance.store.db import Database

__all__ = [
    "SessionFilter",
    "count_sessions",
    "create_session",
    "delete_session",
    "ensure_session",
    "find_session_by_id",
    "find_session_by_label",
    "find_sessions_by_id_prefix",
    "get_session",
    "list_sessions",
    "new_session_id",
    "recent_sessions",
    "reset_session",
    "session_from_row",
    "touch_session",
    "upsert_session",
]

_COLUMNS = (
    "key",
    "session_id",
    "agent_id",
    "label",
    "spawned_by",
    "spawn_depth",
    "overrides",
    "created_at",
    "updated_at",
    "last_interaction_at",
    "session_started_at",
    "lifecycle_revision",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "total_tokens",
    "cost_usd",
    "context_tokens",
    "archived",
    "pinned",
    "model_provider",
    "model",
    "last_run_id",
    "last_run_error",
    "compaction_count",
)


def new_session_id() -> str:
    return str(uuid.uuid4())


def session_from_row(row: Mapping[str, Any]) -> SessionRecord:
    """Build a record from a ``SELECT *`` row of ``sessions``."""
    overrides = json.loads(row["overrides"]) if row["overrides"] else {}
    return SessionRecord(
        key=row["key"],
        session_id=row["session_id"],
        agent_id=row["agent_id"],
        label=row["label"],
        spawned_by=row["spawned_by"],
        spawn_depth=row["spawn_depth"],
        overrides=overrides,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_interaction_at=row["last_interaction_at"],
        session_started_at=row["session_started_at"],
        lifecycle_revision=row["lifecycle_revision"],
        tokens=TokenCounters(
            input=row["input_tokens"],
            output=row["output_tokens"],
            cache_read=row["cache_read_tokens"],
            cache_write=row["cache_write_tokens"],
            total=row["total_tokens"],
            cost_usd=float(row["cost_usd"]),
        ),
        context_tokens=row["context_tokens"],
        archived=bool(row["archived"]),
        pinned=bool(row["pinned"]),
        model_provider=row["model_provider"],
        model=row["model"],
        last_run_id=row["last_run_id"],
        last_run_error=row["last_run_error"],
        compaction_count=row["compaction_count"],
    )


def _to_row(rec: SessionRecord) -> dict[str, Any]:
    return {
        "key": rec.key,
        "session_id": rec.session_id,
        "agent_id": rec.agent_id,
        "label": rec.label,
        "spawned_by": rec.spawned_by,
        "spawn_depth": rec.spawn_depth,
        "overrides": json.dumps(dict(rec.overrides), sort_keys=True, separators=(",", ":")),
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
        "last_interaction_at": rec.last_interaction_at,
        "session_started_at": rec.session_started_at,
        "lifecycle_revision": rec.lifecycle_revision,
        "input_tokens": rec.tokens.input,
        "output_tokens": rec.tokens.output,
        "cache_read_tokens": rec.tokens.cache_read,
        "cache_write_tokens": rec.tokens.cache_write,
        "total_tokens": rec.tokens.total,
        "cost_usd": float(rec.tokens.cost_usd),
        "context_tokens": rec.context_tokens,
        "archived": int(rec.archived),
        "pinned": int(rec.pinned),
        "model_provider": rec.model_provider,
        "model": rec.model,
        "last_run_id": rec.last_run_id,
        "last_run_error": rec.last_run_error,
        "compaction_count": rec.compaction_count,
    }


_UPSERT = (
    f"INSERT INTO sessions ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)}) "
    f"ON CONFLICT(key) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _COLUMNS if c != 'key')}"
)


def get_session(db: Database, key: str) -> SessionRecord | None:
    row = db.query_one("SELECT * FROM sessions WHERE key = ?", (key,))
    return session_from_row(row) if row else None


def find_session_by_label(db: Database, label: str) -> SessionRecord | None:
    row = db.query_one("SELECT * FROM sessions WHERE label = ?", (label,))
    return session_from_row(row) if row else None


def find_session_by_id(db: Database, session_id: str) -> SessionRecord | None:
    row = db.query_one("SELECT * FROM sessions WHERE session_id = ?", (session_id,))
    return session_from_row(row) if row else None


def find_sessions_by_id_prefix(db: Database, prefix: str, *, limit: int = 2) -> list[SessionRecord]:
    """Sessions whose sessionId starts with ``prefix`` (a "short id"), at most ``limit``."""
    rows = db.query(
        "SELECT * FROM sessions WHERE substr(session_id, 1, length(?1)) = ?1 ORDER BY updated_at DESC LIMIT ?2",
        (prefix, max(0, int(limit))),
    )
    return [session_from_row(r) for r in rows]


def upsert_session(db: Database, rec: SessionRecord) -> SessionRecord:
    """Write the whole row (insert or replace by key). Raises StoreConflict on a duplicate label/id."""
    db.execute(_UPSERT, _to_row(rec))
    return rec


def create_session(
    db: Database,
    *,
    key: str,
    agent_id: str,
    now_ms: int,
    session_id: str | None = None,
    label: str | None = None,
    spawned_by: str | None = None,
    spawn_depth: int | None = None,
) -> SessionRecord:
    rec = SessionRecord(
        key=key,
        session_id=session_id or new_session_id(),
        lifecycle_revision=str(uuid.uuid4()),
        agent_id=agent_id,
        created_at=now_ms,
        updated_at=now_ms,
        session_started_at=now_ms,
        label=label,
        spawned_by=spawned_by,
        spawn_depth=spawn_depth,
    )
    db.execute(
        f"INSERT INTO sessions ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)})",
        _to_row(rec),
    )
    return rec


def ensure_session(db: Database, *, key: str, agent_id: str, now_ms: int) -> SessionRecord:
    """The row for ``key``, created empty if missing (in one transaction)."""
    with db.transaction():
        existing = get_session(db, key)
        if existing is not None:
            return existing
        return create_session(db, key=key, agent_id=agent_id, now_ms=now_ms)


def touch_session(db: Database, key: str, *, now_ms: int, interaction: bool = True) -> None:
    """Bump ``updatedAt`` (and ``lastInteractionAt``) after activity."""
    if interaction:
        db.execute(
            "UPDATE sessions SET updated_at = max(updated_at, ?1), last_interaction_at = ?1 WHERE key = ?2",
            (now_ms, key),
        )
    else:
        db.execute("UPDATE sessions SET updated_at = max(updated_at, ?1) WHERE key = ?2", (now_ms, key))


def reset_session(
    db: Database, key: str, *, now_ms: int, session_id: str | None = None
) -> SessionRecord | None:
    """Start a fresh conversation on ``key``: new sessionId and lifecycle revision, counters zeroed.

    Labels, overrides and lineage stay. Returns None when ``key`` has no row.
    """
    with db.transaction():
        current = get_session(db, key)
        if current is None:
            return None
        fresh = attrs.evolve(
            current,
            session_id=session_id or new_session_id(),
            lifecycle_revision=str(uuid.uuid4()),
            tokens=TokenCounters(),
            context_tokens=None,
            session_started_at=now_ms,
            updated_at=max(current.updated_at, now_ms),
            last_interaction_at=None,
            last_run_id=None,
            last_run_error=None,
            compaction_count=0,
        )
        upsert_session(db, fresh)
        return fresh


def delete_session(db: Database, key: str, *, delete_transcript: bool = True) -> SessionRecord | None:
    """Remove the row (and its transcript lines unless asked to keep them); returns what was removed."""
    with db.transaction():
        current = get_session(db, key)
        if current is None:
            return None
        db.execute("DELETE FROM sessions WHERE key = ?", (key,))
        if delete_transcript:
            db.execute("DELETE FROM transcripts WHERE session_key = ?", (key,))
        return current


@attrs.frozen
class SessionFilter:
    """``sessions.list`` filters, already validated."""

    agent_id: str | None = None
    search: str | None = None
    label: str | None = None
    spawned_by: str | None = None
    include_global: bool = False
    include_unknown: bool = False
    include_archived: bool = False
    active_since_ms: int | None = None
    limit: int = 100
    offset: int = 0


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_sessions(db: Database, flt: SessionFilter) -> tuple[list[SessionRecord], int]:
    """Rows matching ``flt``, newest ``updatedAt`` first, and the total count before paging."""
    where: list[str] = []
    args: list[Any] = []
    if flt.agent_id is not None:
        where.append("agent_id = ?")
        args.append(flt.agent_id)
    if flt.label is not None:
        where.append("label = ?")
        args.append(flt.label)
    if flt.spawned_by is not None:
        where.append("spawned_by = ?")
        args.append(flt.spawned_by)
    if not flt.include_global:
        where.append("key <> 'global' AND key NOT LIKE 'agent:%:global'")
    if not flt.include_unknown:
        where.append("key <> 'unknown'")
    if not flt.include_archived:
        where.append("archived = 0")
    if flt.active_since_ms is not None:
        where.append("updated_at >= ?")
        args.append(flt.active_since_ms)
    if flt.search:
        pattern = f"%{_like_escape(flt.search.lower())}%"
        where.append(
            "(lower(key) LIKE ? ESCAPE '\\' OR lower(coalesce(label, '')) LIKE ? ESCAPE '\\' "
            "OR lower(session_id) LIKE ? ESCAPE '\\')"
        )
        args.extend([pattern, pattern, pattern])
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    total = int(db.scalar(f"SELECT count(*) FROM sessions {clause}", args))
    rows = db.query(
        f"SELECT * FROM sessions {clause} ORDER BY updated_at DESC, key LIMIT ? OFFSET ?",
        [*args, flt.limit, flt.offset],
    )
    return [session_from_row(r) for r in rows], total


def count_sessions(db: Database) -> int:
    """How many sessions exist (the ``health`` method reports it)."""
    return int(db.scalar("SELECT count(*) FROM sessions"))


def recent_sessions(db: Database, limit: int = 5) -> list[dict[str, Any]]:
    """The ``limit`` most recently updated sessions as ``{key, sessionId, updatedAt, label?}``."""
    rows = db.query(
        "SELECT key, session_id, updated_at, label FROM sessions ORDER BY updated_at DESC, key LIMIT ?",
        (max(0, int(limit)),),
    )
    out: list[dict[str, Any]] = []
    for r in rows:
        item: dict[str, Any] = {"key": r["key"], "sessionId": r["session_id"], "updatedAt": r["updated_at"]}
        if r["label"] is not None:
            item["label"] = r["label"]
        out.append(item)
    return out
