"""The queue journal in SQLite (apsw), with the rules of :mod:`appliance.queue.journal`.

Every method is one transaction. ``accept`` commits before it returns, so an acknowledged item survives
kill -9; ``mark_done`` writes the result and the done marker together and only for a running item.
The DDL is a module constant so the store's migration ladder can take it over; until then
:class:`SqliteJournal` applies it itself with ``CREATE ... IF NOT EXISTS``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import apsw

from appliance.queue.journal import ItemState, JournalRecord
from appliance.queue.policy import QueueItem
from appliance.store.migrations import QUEUE_SCHEMA_SQL

__all__ = ["QUEUE_SCHEMA_SQL", "SqliteJournal"]


_COLUMNS = "seq, body, state, attempt, result, error, completions"


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _body(item: QueueItem) -> str:
    return json.dumps(
        {
            "item_id": item.item_id,
            "session_key": item.session_key,
            "kind": str(item.kind),
            "text": item.text,
            "attachments": list(item.attachments),
            "idempotency_key": item.idempotency_key,
            "task_id": item.task_id,
            "accepted_ms": item.accepted_ms,
        },
        separators=(",", ":"),
    )


def _record(row: Sequence[Any]) -> JournalRecord:
    seq, body, state, attempt, result, error, completions = row
    data = json.loads(body)
    item = QueueItem(**data, attempt=attempt)
    return JournalRecord(item, ItemState(state), seq, result, error, completions)


class SqliteJournal:
    """A :class:`~appliance.queue.journal.QueueJournal` on an apsw connection (WAL mode recommended)."""

    def __init__(self, conn: apsw.Connection, *, now_ms: Callable[[], int] = _wall_ms) -> None:
        self._conn = conn
        self._now_ms = now_ms
        with self._conn:
            self._conn.execute(QUEUE_SCHEMA_SQL)

    def accept(self, item: QueueItem, *, supersedes: Sequence[str] = ()) -> None:
        now = self._now_ms()
        with self._conn:
            if item.idempotency_key is not None:
                # An expired key may be reused: the old row keeps its history, not the key.
                self._conn.execute(
                    "UPDATE queue_items SET idempotency_key = NULL WHERE idempotency_key = ?",
                    (item.idempotency_key,),
                )
            for old in supersedes:
                self._conn.execute(
                    "UPDATE queue_items SET state = 'superseded', superseded_by = ?, updated_ms = ? "
                    "WHERE item_id = ? AND state = 'queued'",
                    (item.item_id, now, old),
                )
            self._conn.execute(
                "INSERT INTO queue_items (item_id, session_key, body, idempotency_key, attempt, accepted_ms, "
                "updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    item.item_id,
                    item.session_key,
                    _body(item),
                    item.idempotency_key,
                    item.attempt,
                    item.accepted_ms or now,
                    now,
                ),
            )

    def _update(self, sql: str, args: Sequence[Any]) -> int:
        with self._conn:
            self._conn.execute(sql, tuple(args))
            changed = int(self._conn.changes())
        return changed

    def mark_running(self, item: QueueItem) -> None:
        self._update(
            "UPDATE queue_items SET state = 'running', attempt = ?, updated_ms = ? WHERE item_id = ?",
            (item.attempt, self._now_ms(), item.item_id),
        )

    def mark_retry(self, item: QueueItem, error: str) -> None:
        self._update(
            "UPDATE queue_items SET state = 'queued', attempt = ?, error = ?, updated_ms = ? WHERE item_id = ?",
            (item.attempt, error, self._now_ms(), item.item_id),
        )

    def mark_done(self, item: QueueItem, result: str | None) -> bool:
        return (
            self._update(
                "UPDATE queue_items SET state = 'done', result = ?, completions = completions + 1, "
                "updated_ms = ? WHERE item_id = ? AND state = 'running'",
                (result, self._now_ms(), item.item_id),
            )
            == 1
        )

    def mark_failed(self, item: QueueItem, error: str) -> None:
        self._update(
            "UPDATE queue_items SET state = 'failed', attempt = ?, error = ?, updated_ms = ? WHERE item_id = ?",
            (item.attempt, error, self._now_ms(), item.item_id),
        )

    def pending(self) -> list[QueueItem]:
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM queue_items WHERE state IN ('queued', 'running') ORDER BY seq"
        )
        return [_record(row).item for row in rows]

    def recover(self) -> list[QueueItem]:
        self._update(
            "UPDATE queue_items SET state = 'queued', updated_ms = ? WHERE state = 'running'",
            (self._now_ms(),),
        )
        return self.pending()

    def lookup(self, idempotency_key: str) -> JournalRecord | None:
        for row in self._conn.execute(
            f"SELECT {_COLUMNS} FROM queue_items WHERE idempotency_key = ?", (idempotency_key,)
        ):
            return _record(row)
        return None

    def get(self, item_id: str) -> JournalRecord | None:
        for row in self._conn.execute(f"SELECT {_COLUMNS} FROM queue_items WHERE item_id = ?", (item_id,)):
            return _record(row)
        return None

    def failed(self, limit: int = 100) -> list[JournalRecord]:
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM queue_items WHERE state = 'failed' ORDER BY seq DESC LIMIT ?", (limit,)
        )
        return [_record(row) for row in rows]

    def records(self) -> list[JournalRecord]:
        return [
            _record(row) for row in self._conn.execute(f"SELECT {_COLUMNS} FROM queue_items ORDER BY seq")
        ]

    def prune(self, before_ms: int) -> int:
        """Delete done and superseded rows last touched before ``before_ms`` (keep at least the dedupe TTL)."""
        return self._update(
            "DELETE FROM queue_items WHERE state IN ('done', 'superseded') AND updated_ms < ?", (before_ms,)
        )
