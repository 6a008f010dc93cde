"""The appliance's SQLite store (apsw): :func:`open_database`, the migration ladder and typed queries.

Other components import from here only. ``Database`` is a thin synchronous shell; queries return the
frozen models of :mod:`appliance.models.sessions`.
"""

from __future__ import annotations

from appliance.store.db import Database, StoreConflict, map_store_errors, open_database
from appliance.store.migrations import MIGRATIONS, Migration, latest_version
from appliance.store.queries import (
    SessionFilter,
    append_message,
    compact_transcript,
    count_messages,
    count_messages_by_role,
    count_sessions,
    create_session,
    delete_session,
    delete_transcript,
    ensure_session,
    find_session_by_id,
    find_session_by_label,
    find_sessions_by_id_prefix,
    get_session,
    history,
    list_sessions,
    new_session_id,
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

__all__ = [
    "MIGRATIONS",
    "Database",
    "Migration",
    "SessionFilter",
    "StoreConflict",
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
    "latest_version",
    "list_sessions",
    "map_store_errors",
    "new_session_id",
    "open_database",
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
