"""Typed queries on the ``transcripts`` table: one row per message, ordered by ``seq`` within a key.

``seq`` grows per session key and never repeats, even across resets and compactions, so a client's
cursor stays meaningful. A message with an ``idempotency_key`` already stored for the key is not stored
twice: :func:`append_message` returns the first one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from appliance.models.sessions import TranscriptMessage
from appliance.store.db import Database

__all__ = [
    "append_message",
    "compact_transcript",
    "count_messages",
    "count_messages_by_role",
    "delete_transcript",
    "history",
    "message_from_row",
    "tail_messages",
]


def message_from_row(row: Mapping[str, Any]) -> TranscriptMessage:
    return TranscriptMessage(
        id=row["id"],
        session_key=row["session_key"],
        session_id=row["session_id"],
        seq=row["seq"],
        role=row["role"],
        content=json.loads(row["content"]),
        ts=row["ts"],
        idempotency_key=row["idempotency_key"],
        usage=json.loads(row["usage"]) if row["usage"] else None,
    )


def append_message(
    db: Database,
    *,
    session_key: str,
    session_id: str,
    role: str,
    content: Any,
    ts: int,
    idempotency_key: str | None = None,
    usage: Mapping[str, Any] | None = None,
) -> TranscriptMessage:
    """Store one message at the next ``seq`` (or return the stored one with the same idempotency key)."""
    with db.transaction():
        if idempotency_key is not None:
            row = db.query_one(
                "SELECT * FROM transcripts WHERE session_key = ? AND idempotency_key = ?",
                (session_key, idempotency_key),
            )
            if row is not None:
                return message_from_row(row)
        seq = int(
            db.scalar(
                "SELECT coalesce(max(seq), 0) + 1 FROM transcripts WHERE session_key = ?", (session_key,)
            )
        )
        db.execute(
            "INSERT INTO transcripts (session_key, session_id, seq, role, content, ts, idempotency_key, usage) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session_key,
                session_id,
                seq,
                role,
                json.dumps(content, separators=(",", ":")),
                ts,
                idempotency_key,
                json.dumps(dict(usage), separators=(",", ":")) if usage is not None else None,
            ),
        )
        msg_id = int(db.scalar("SELECT last_insert_rowid()"))
    return TranscriptMessage(
        id=msg_id,
        session_key=session_key,
        session_id=session_id,
        seq=seq,
        role=role,
        content=content,
        ts=ts,
        idempotency_key=idempotency_key,
        usage=usage,
    )


def history(
    db: Database,
    session_key: str,
    session_id: str,
    *,
    limit: int = 200,
    before_seq: int | None = None,
) -> list[TranscriptMessage]:
    """Up to ``limit`` messages of the current conversation, oldest first, ending before ``before_seq``."""
    bound = before_seq if before_seq is not None else 2**62
    rows = db.query(
        "SELECT * FROM (SELECT * FROM transcripts WHERE session_key = ? AND session_id = ? AND seq < ? "
        "ORDER BY seq DESC LIMIT ?) ORDER BY seq",
        (session_key, session_id, bound, max(0, int(limit))),
    )
    return [message_from_row(r) for r in rows]


def tail_messages(db: Database, session_key: str, session_id: str, limit: int) -> list[TranscriptMessage]:
    """The last ``limit`` messages, oldest first (previews, last-message columns)."""
    return history(db, session_key, session_id, limit=limit)


def count_messages(db: Database, session_key: str, session_id: str | None = None) -> int:
    if session_id is None:
        return int(db.scalar("SELECT count(*) FROM transcripts WHERE session_key = ?", (session_key,)))
    return int(
        db.scalar(
            "SELECT count(*) FROM transcripts WHERE session_key = ? AND session_id = ?",
            (session_key, session_id),
        )
    )


def count_messages_by_role(db: Database, session_key: str, session_id: str | None = None) -> dict[str, int]:
    """``{role: count}`` for the key (and conversation, when ``session_id`` is given)."""
    if session_id is None:
        rows = db.execute(
            "SELECT role, count(*) FROM transcripts WHERE session_key = ? GROUP BY role", (session_key,)
        )
    else:
        rows = db.execute(
            "SELECT role, count(*) FROM transcripts WHERE session_key = ? AND session_id = ? GROUP BY role",
            (session_key, session_id),
        )
    return {str(role): int(n) for role, n in rows}


def compact_transcript(db: Database, session_key: str, session_id: str, max_lines: int) -> tuple[int, int]:
    """Keep the newest ``max_lines`` messages of the conversation; return ``(kept, removed)``."""
    if max_lines < 1:
        raise ValueError("max_lines must be >= 1")
    with db.transaction():
        total = count_messages(db, session_key, session_id)
        if total <= max_lines:
            return total, 0
        db.execute(
            "DELETE FROM transcripts WHERE session_key = ?1 AND session_id = ?2 AND seq < ("
            "SELECT min(seq) FROM (SELECT seq FROM transcripts WHERE session_key = ?1 AND session_id = ?2 "
            "ORDER BY seq DESC LIMIT ?3))",
            (session_key, session_id, max_lines),
        )
        removed = db.changes()
    return total - removed, removed


def delete_transcript(db: Database, session_key: str) -> int:
    """Remove every message stored under ``session_key``; returns how many."""
    db.execute("DELETE FROM transcripts WHERE session_key = ?", (session_key,))
    return db.changes()
