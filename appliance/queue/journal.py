"""Where accepted queue items live until they are done: the ``QueueJournal`` protocol and an
in-memory implementation for tests.

Rules:
- ``accept`` returns only once the item is durable; the shell acknowledges the sender after it. Items an
  admission supersedes (steer, collect) are closed in the same write.
- An item is ``queued`` -> ``running`` -> ``done`` | ``failed`` (parked), or ``superseded``. A failed run
  that will be retried goes back to ``queued`` with its attempt count.
- ``mark_done`` stores the result and the done marker in one write and refuses an item that is not
  running: a run finished twice (impossible unless the process restarted mid-write) completes once.
- ``recover`` (at start) turns ``running`` rows back into ``queued`` and returns every queued item in
  acceptance order: after kill -9 every acknowledged item is either done or queued again.
- Methods are synchronous and short: the shell calls them between its own state changes so that
  journal and policy never disagree across a checkpoint.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol

import attrs

from appliance.queue.policy import QueueItem

__all__ = ["ItemState", "JournalRecord", "MemoryJournal", "QueueJournal"]


class ItemState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SUPERSEDED = "superseded"


@attrs.frozen
class JournalRecord:
    item: QueueItem
    state: ItemState
    seq: int
    result: str | None = None
    error: str | None = None
    completions: int = 0


class QueueJournal(Protocol):
    def accept(self, item: QueueItem, *, supersedes: Sequence[str] = ()) -> None: ...

    def mark_running(self, item: QueueItem) -> None: ...

    def mark_retry(self, item: QueueItem, error: str) -> None: ...

    def mark_done(self, item: QueueItem, result: str | None) -> bool: ...

    def mark_failed(self, item: QueueItem, error: str) -> None: ...

    def pending(self) -> list[QueueItem]: ...

    def recover(self) -> list[QueueItem]: ...

    def lookup(self, idempotency_key: str) -> JournalRecord | None: ...

    def get(self, item_id: str) -> JournalRecord | None: ...

    def failed(self, limit: int = 100) -> list[JournalRecord]: ...


class MemoryJournal:
    """A journal in a dict: same rules, no durability. For tests and for the bench."""

    def __init__(self) -> None:
        self._records: dict[str, JournalRecord] = {}
        self._keys: dict[str, str] = {}
        self._seq = 0

    def accept(self, item: QueueItem, *, supersedes: Sequence[str] = ()) -> None:
        if item.item_id in self._records:
            raise ValueError(f"item accepted twice: {item.item_id}")
        for old in supersedes:
            record = self._records[old]
            self._records[old] = attrs.evolve(record, state=ItemState.SUPERSEDED)
        self._seq += 1
        self._records[item.item_id] = JournalRecord(item, ItemState.QUEUED, self._seq)
        if item.idempotency_key is not None:
            self._keys[item.idempotency_key] = item.item_id

    def _set(self, item: QueueItem, state: ItemState, error: str | None = None) -> JournalRecord:
        record = self._records[item.item_id]
        updated = attrs.evolve(
            record, item=item, state=state, error=error if error is not None else record.error
        )
        self._records[item.item_id] = updated
        return updated

    def mark_running(self, item: QueueItem) -> None:
        self._set(item, ItemState.RUNNING)

    def mark_retry(self, item: QueueItem, error: str) -> None:
        self._set(item, ItemState.QUEUED, error=error)

    def mark_done(self, item: QueueItem, result: str | None) -> bool:
        record = self._records[item.item_id]
        if record.state is not ItemState.RUNNING:
            return False
        self._records[item.item_id] = attrs.evolve(
            record, state=ItemState.DONE, result=result, completions=record.completions + 1
        )
        return True

    def mark_failed(self, item: QueueItem, error: str) -> None:
        self._set(item, ItemState.FAILED, error=error)

    def pending(self) -> list[QueueItem]:
        rows = sorted(self._records.values(), key=lambda r: r.seq)
        return [r.item for r in rows if r.state in (ItemState.QUEUED, ItemState.RUNNING)]

    def recover(self) -> list[QueueItem]:
        for key, record in list(self._records.items()):
            if record.state is ItemState.RUNNING:
                self._records[key] = attrs.evolve(record, state=ItemState.QUEUED)
        return self.pending()

    def lookup(self, idempotency_key: str) -> JournalRecord | None:
        item_id = self._keys.get(idempotency_key)
        return self._records.get(item_id) if item_id is not None else None

    def get(self, item_id: str) -> JournalRecord | None:
        return self._records.get(item_id)

    def failed(self, limit: int = 100) -> list[JournalRecord]:
        rows = [r for r in self._records.values() if r.state is ItemState.FAILED]
        return sorted(rows, key=lambda r: -r.seq)[:limit]

    def records(self) -> list[JournalRecord]:
        return sorted(self._records.values(), key=lambda r: r.seq)
