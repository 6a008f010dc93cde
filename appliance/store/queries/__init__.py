"""Typed query functions, one module per table; re-exported here as the queries' public surface."""

from __future__ import annotations

from appliance.store.queries.sessions import (
    SessionFilter,
    count_sessions,
    create_session,
    delete_session,
    ensure_session,
    find_session_by_id,
    find_session_by_label,
    find_sessions_by_id_prefix,
    get_session,
    list_sessions,
    new_session_id,
    recent_sessions,
    reset_session,
    touch_session,
    upsert_session,
)
from appliance.store.queries.transcripts import (
    append_message,
    compact_transcript,
    count_messages,
    count_messages_by_role,
    delete_transcript,
    history,
    tail_messages,
)
from appliance.store.queries.usage import (
    record_usage,
    usage_by_model,
    usage_by_session,
    usage_daily,
    usage_logs,
    usage_totals,
)

__all__ = [
    "SessionFilter",
    "append_message",
    "compact_transcript",
    "count_messages",
    "count_messages_by_role",
    "count_sessions",
    "create_session",
    "delete_session",
    "delete_transcript",
    "ensure_session",
    "find_session_by_id",
    "find_session_by_label",
    "find_sessions_by_id_prefix",
    "get_session",
    "history",
    "list_sessions",
    "new_session_id",
    "recent_sessions",
    "record_usage",
    "reset_session",
    "tail_messages",
    "touch_session",
    "upsert_session",
    "usage_by_model",
    "usage_by_session",
    "usage_daily",
    "usage_logs",
    "usage_totals",
]
