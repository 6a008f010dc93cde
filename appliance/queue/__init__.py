"""The run queue: per-session FIFO lanes, queue modes, a global gate, retries, idempotency, durability.

Import from here; the modules behind are private to the component.
"""

from __future__ import annotations

from appliance.queue.journal import ItemState, JournalRecord, MemoryJournal, QueueJournal
from appliance.queue.journal_sqlite import QUEUE_SCHEMA_SQL, SqliteJournal
from appliance.queue.mailbox import Runner, RunQueue, make_item, open_run_queue, queue_options, raise_single
from appliance.queue.policy import (
    Activation,
    Admission,
    AdmissionKind,
    DedupeCache,
    ItemKind,
    Parked,
    QueueItem,
    QueueMode,
    QueuePolicy,
    QueueSnapshot,
    Retry,
    admits_group_message,
    backoff_ms,
    mentions_assistant,
)

__all__ = [
    "QUEUE_SCHEMA_SQL",
    "Activation",
    "Admission",
    "AdmissionKind",
    "DedupeCache",
    "ItemKind",
    "ItemState",
    "JournalRecord",
    "MemoryJournal",
    "Parked",
    "QueueItem",
    "QueueJournal",
    "QueueMode",
    "QueuePolicy",
    "QueueSnapshot",
    "Retry",
    "RunQueue",
    "Runner",
    "SqliteJournal",
    "admits_group_message",
    "backoff_ms",
    "make_item",
    "mentions_assistant",
    "open_run_queue",
    "queue_options",
    "raise_single",
]
