"""Turn records in the store: what ran, how it ended, and recovery after a crash.

Rules:
- one row per turn in ``agent_turns``, keyed by ``run_id`` (the request's idempotency key, as OpenClaw's
  ``runId``); the row is written ``running`` *before* the turn starts and finished exactly once;
- a second request with the same ``run_id`` finds the row and gets the first result (dedupe);
- :func:`recover_interrupted` runs at start: every row still ``running`` was cut short by a crash
  (kill -9); it is marked ``error`` and a ``run-failed-before-reply`` entry goes into the session's
  transcript, so ``chat.history`` shows the user what happened;
- the table comes with store migration v2 (:data:`AGENT_TURNS_SCHEMA_SQL`); ``IF NOT EXISTS`` at start
  keeps a bare database (tests) working too.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from appliance.store import Database, append_message
from appliance.store.migrations import AGENT_TURNS_SCHEMA_SQL

__all__ = [
    "AGENT_TURNS_SCHEMA_SQL",
    "FAILED_BEFORE_REPLY",
    "TurnPath",
    "TurnRecord",
    "TurnStatus",
    "begin_turn",
    "ensure_turns_table",
    "finish_turn",
    "get_turn",
    "recover_interrupted",
]

FAILED_BEFORE_REPLY = "run-failed-before-reply"


class TurnStatus(enum.StrEnum):
    RUNNING = "running"
    OK = "ok"
    ERROR = "error"
    ABORTED = "aborted"
    TIMEOUT = "timeout"


class TurnPath(enum.StrEnum):
    TOOL = "tool"
    MODEL = "model"
    NONE = "none"


@attrs.frozen
class TurnRecord:
    run_id: str
    session_key: str
    session_id: str
    agent_id: str
    request_id: str
    status: TurnStatus
    started_at: int
    path: TurnPath = TurnPath.NONE
    message: str = ""
    reply: str | None = None
    error: str | None = None
    attempts: int = 0
    total_tokens: int = 0
    ended_at: int | None = None

    @property
    def finished(self) -> bool:
        return self.status is not TurnStatus.RUNNING


def _from_row(row: Mapping[str, Any]) -> TurnRecord:
    return TurnRecord(
        run_id=row["run_id"],
        session_key=row["session_key"],
        session_id=row["session_id"],
        agent_id=row["agent_id"],
        request_id=row["request_id"],
        status=TurnStatus(row["status"]),
        started_at=row["started_at"],
        path=TurnPath(row["path"]),
        message=row["message"],
        reply=row["reply"],
        error=row["error"],
        attempts=row["attempts"],
        total_tokens=row["total_tokens"],
        ended_at=row["ended_at"],
    )


def ensure_turns_table(db: Database) -> None:
    with db.transaction():
        for statement in AGENT_TURNS_SCHEMA_SQL.split(";"):
            if statement.strip():
                db.execute(statement)


def get_turn(db: Database, run_id: str) -> TurnRecord | None:
    row = db.query_one("SELECT * FROM agent_turns WHERE run_id = ?", (run_id,))
    return _from_row(row) if row is not None else None


def begin_turn(db: Database, rec: TurnRecord) -> tuple[TurnRecord, bool]:
    """Insert ``rec`` as running; return ``(stored, created)`` -- the first record when the id exists."""
    with db.transaction():
        existing = get_turn(db, rec.run_id)
        if existing is not None:
            return existing, False
        db.execute(
            "INSERT INTO agent_turns (run_id, session_key, session_id, agent_id, request_id, status, path, "
            "message, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec.run_id,
                rec.session_key,
                rec.session_id,
                rec.agent_id,
                rec.request_id,
                str(TurnStatus.RUNNING),
                str(rec.path),
                rec.message,
                rec.started_at,
            ),
        )
    return attrs.evolve(rec, status=TurnStatus.RUNNING), True


def finish_turn(
    db: Database,
    run_id: str,
    *,
    status: TurnStatus,
    path: TurnPath,
    ended_at: int,
    reply: str | None = None,
    error: str | None = None,
    attempts: int = 0,
    total_tokens: int = 0,
) -> TurnRecord | None:
    """Finish a running turn (a finished one is left as it is); return the stored record."""
    with db.transaction():
        db.execute(
            "UPDATE agent_turns SET status = ?, path = ?, reply = ?, error = ?, attempts = ?, total_tokens = ?, "
            "ended_at = ? WHERE run_id = ? AND status = 'running'",
            (str(status), str(path), reply, error, attempts, total_tokens, ended_at, run_id),
        )
        return get_turn(db, run_id)


def recover_interrupted(db: Database, *, now_ms: int) -> list[TurnRecord]:
    """Mark turns left running by a crash as failed and tell their sessions; return them."""
    rows = db.query("SELECT * FROM agent_turns WHERE status = 'running' ORDER BY started_at")
    recovered: list[TurnRecord] = []
    for row in rows:
        rec = _from_row(row)
        reason = "the gateway stopped during this turn (restart); please send the message again"
        with db.transaction():
            done = finish_turn(
                db, rec.run_id, status=TurnStatus.ERROR, path=rec.path, ended_at=now_ms, error=reason
            )
            append_message(
                db,
                session_key=rec.session_key,
                session_id=rec.session_id,
                role="custom",
                content={
                    "customType": FAILED_BEFORE_REPLY,
                    "text": f"This turn ended before a reply: {reason}",
                    "runId": rec.run_id,
                },
                ts=now_ms,
                idempotency_key=f"{rec.run_id}:failed",
            )
        if done is not None:
            recovered.append(done)
    return recovered
