"""The run queue's trio shell: journal first, then the policy, then start runs when it says so.

Rules:
- ``enqueue`` is acknowledged only after the journal holds the item (durability before ack). A full
  lane raises :class:`~appliance.errors.QueueFull` before anything is written.
- One dispatcher task starts runs; it sleeps on a :class:`trio.Event` that every state change sets
  (enqueue, run end, backoff end): no polling, no wake-ups when idle.
- Each run is its own task in the queue's nursery. The policy's gate (``max_concurrent``) bounds them,
  and it picks the next session round-robin at the moment a slot frees.
- A runner returns a result string (or ``None``) or raises. A non-retryable
  :class:`~appliance.errors.ApplianceError` parks the item at once; any other exception is retried with
  backoff, sleeping on the trio clock (so tests run under ``autojump_clock``).
- Leaving :func:`open_run_queue` cancels runs in flight. Their journal rows stay ``running`` and the next
  start re-queues them: a run may be started again, but it is done only once.
"""

from __future__ import annotations

import contextlib
import random as _random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import attrs
import trio

from appliance.config.settings import QueueSettings
from appliance.errors import ApplianceError
from appliance.log import get_logger
from appliance.queue.journal import ItemState, JournalRecord, QueueJournal
from appliance.queue.policy import (
    Admission,
    AdmissionKind,
    DedupeCache,
    ItemKind,
    QueueItem,
    QueueMode,
    QueuePolicy,
    QueueSnapshot,
    Retry,
)

__all__ = ["RunQueue", "Runner", "make_item", "open_run_queue", "queue_options", "raise_single"]

log = get_logger("appliance.queue")

Runner = Callable[[QueueItem], Awaitable[str | None]]


def raise_single(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise the one exception a nursery wrapped (the caller's own, usually) as itself; a real group
    of several stays a group. Keeps ``async with open_*(): raise X`` raising ``X``."""
    if len(group.exceptions) == 1:
        raise group.exceptions[0]
    raise group


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def queue_options(settings: QueueSettings) -> dict[str, Any]:
    """:func:`open_run_queue` keyword arguments from the configured settings."""
    return {
        "max_concurrent": settings.effective_concurrency(),
        "capacity": settings.mailbox_capacity,
        "default_mode": QueueMode(settings.default_mode),
        "max_attempts": settings.retry_max_attempts,
        "retry_base_ms": settings.retry_base_ms,
        "retry_cap_ms": settings.retry_cap_ms,
        "dedupe_ttl_ms": settings.dedupe_ttl_s * 1000,
        "dedupe_max_entries": settings.dedupe_max_entries,
    }


def make_item(
    session_key: str,
    text: str = "",
    *,
    kind: ItemKind = ItemKind.PROMPT,
    idempotency_key: str | None = None,
    task_id: str | None = None,
    attachments: tuple[str, ...] = (),
    item_id: str | None = None,
) -> QueueItem:
    """A new item with a fresh id (the idempotency key when there is one, as OpenClaw's ``runId``)."""
    return QueueItem(
        item_id=item_id or idempotency_key or uuid.uuid4().hex,
        session_key=session_key,
        kind=kind,
        text=text,
        attachments=attachments,
        idempotency_key=idempotency_key,
        task_id=task_id,
    )


class RunQueue:
    """Per-session FIFO run queue. Create it with :func:`open_run_queue`."""

    def __init__(
        self,
        *,
        policy: QueuePolicy,
        journal: QueueJournal,
        runner: Runner,
        nursery: trio.Nursery,
        dedupe: DedupeCache[Admission],
        now_ms: Callable[[], int],
    ) -> None:
        self.policy = policy
        self.journal = journal
        self._runner = runner
        self._nursery = nursery
        self._dedupe = dedupe
        self._now_ms = now_ms
        self._wake = trio.Event()
        self._changed = trio.Event()
        self._finished: dict[str, trio.Event] = {}

    # -- public surface ----------------------------------------------------------------------------

    async def enqueue(self, item: QueueItem, *, mode: QueueMode | None = None) -> Admission:
        """Accept ``item`` durably, or raise QueueFull. Repeats of an idempotency key within the TTL
        return the first admission (kind ``duplicate``) and run nothing."""
        await trio.lowlevel.checkpoint()
        now = self._now_ms()
        key = item.idempotency_key
        if key is not None:
            seen = self._seen(key, now)
            if seen is not None:
                return seen
        item = attrs.evolve(item, accepted_ms=item.accepted_ms or now)
        if self.journal.get(item.item_id) is not None:  # an id reused after its key expired
            item = attrs.evolve(item, item_id=uuid.uuid4().hex)
        admission = self.policy.plan(item, mode=mode)  # raises QueueFull, changes nothing
        self.journal.accept(admission.item, supersedes=admission.supersedes)
        self.policy.apply(admission)
        for old in admission.supersedes:
            self._signal_finished(old)
        if key is not None:
            self._dedupe.put(key, Admission(AdmissionKind.DUPLICATE, admission.item), now)
        log.debug(
            "item_queued",
            item_id=admission.item.item_id,
            session_id=item.session_key,
            admission=str(admission.kind),
        )
        self._poke()
        return admission

    async def wait_done(self, item_id: str) -> JournalRecord:
        """Wait until the item is done, parked or superseded; return its journal record.

        Raises KeyError for an item the journal does not know.
        """
        while True:
            record = self.journal.get(item_id)
            if record is None:
                raise KeyError(item_id)
            if record.state in (ItemState.DONE, ItemState.FAILED, ItemState.SUPERSEDED):
                return record
            await self._finished.setdefault(item_id, trio.Event()).wait()

    def snapshot(self) -> QueueSnapshot:
        return self.policy.snapshot()

    async def wait_idle(self) -> None:
        """Return once nothing is running, waiting or backing off (tests, graceful shutdown)."""
        while not self.policy.is_idle():
            await self._changed.wait()

    # -- internals -------------------------------------------------------------------------------

    def _seen(self, key: str, now: int) -> Admission | None:
        cached = self._dedupe.get(key, now)
        if cached is not None:
            return cached
        record = self.journal.lookup(key)
        if record is None:
            return None
        if record.item.accepted_ms + self._dedupe.ttl_ms <= now:
            return None
        first = Admission(AdmissionKind.DUPLICATE, record.item)
        self._dedupe.put(key, first, record.item.accepted_ms)
        return first

    def _signal_finished(self, item_id: str) -> None:
        event = self._finished.pop(item_id, None)
        if event is not None:
            event.set()

    def _poke(self) -> None:
        self._wake.set()
        self._changed.set()
        self._changed = trio.Event()

    async def _dispatch(self) -> None:
        while True:
            while (item := self.policy.take()) is not None:
                self._nursery.start_soon(self._run, item, name=f"run:{item.session_key}")
            self._wake = trio.Event()
            await self._wake.wait()

    async def _run(self, item: QueueItem) -> None:
        self.journal.mark_running(item)
        started = trio.current_time()
        log.info("run_started", item_id=item.item_id, session_id=item.session_key, attempt=item.attempt)
        try:
            result = await self._runner(item)
        except Exception as exc:  # a runner's failure is data here: retry or park, never crash the queue
            run_ms = (trio.current_time() - started) * 1000
            retryable = not isinstance(exc, ApplianceError) or exc.retryable
            error = exc.message if isinstance(exc, ApplianceError) else f"{type(exc).__name__}: {exc}"
            outcome = self.policy.fail(item, run_ms=run_ms, retryable=retryable)
            if isinstance(outcome, Retry):
                self.journal.mark_retry(outcome.item, error)
                log.warning(
                    "run_failed",
                    item_id=item.item_id,
                    session_id=item.session_key,
                    attempt=item.attempt,
                    retry_in_ms=outcome.delay_ms,
                    error=error,
                )
                self._nursery.start_soon(self._backoff, outcome)
            else:
                self.journal.mark_failed(outcome.item, error)
                self._signal_finished(item.item_id)
                log.warning(
                    "run_parked", item_id=item.item_id, session_id=item.session_key, attempts=outcome.attempts
                )
        else:
            run_ms = (trio.current_time() - started) * 1000
            self.journal.mark_done(item, result)
            self.policy.complete(item, run_ms=run_ms)
            self._signal_finished(item.item_id)
            log.info(
                "run_finished", item_id=item.item_id, session_id=item.session_key, duration_ms=int(run_ms)
            )
        self._poke()

    async def _backoff(self, retry: Retry) -> None:
        await trio.sleep(retry.delay_ms / 1000)
        self.policy.retry_due(retry.item.session_key)
        self._poke()


@contextlib.asynccontextmanager
async def open_run_queue(
    runner: Runner,
    journal: QueueJournal,
    *,
    max_concurrent: int,
    capacity: int = 32,
    total_capacity: int | None = None,
    default_mode: QueueMode = QueueMode.FOLLOWUP,
    max_attempts: int = 4,
    retry_base_ms: int = 500,
    retry_cap_ms: int = 60_000,
    dedupe_ttl_ms: int = 600_000,
    dedupe_max_entries: int = 2048,
    random: Callable[[], float] | None = None,
    now_ms: Callable[[], int] = _wall_ms,
) -> AsyncIterator[RunQueue]:
    """Open a run queue: recover the journal's unfinished items, then serve until the block exits.

    The keyword arguments mirror :class:`~appliance.config.settings.QueueSettings`.
    """
    policy = QueuePolicy(
        max_concurrent=max_concurrent,
        capacity=capacity,
        total_capacity=total_capacity,
        default_mode=default_mode,
        max_attempts=max_attempts,
        retry_base_ms=retry_base_ms,
        retry_cap_ms=retry_cap_ms,
        random=random or _random.SystemRandom().random,
    )
    recovered = journal.recover()
    policy.restore(recovered)
    if recovered:
        log.info("queue_recovered", items=len(recovered))
    try:
        async with trio.open_nursery() as nursery:
            queue = RunQueue(
                policy=policy,
                journal=journal,
                runner=runner,
                nursery=nursery,
                dedupe=DedupeCache(ttl_ms=dedupe_ttl_ms, max_entries=dedupe_max_entries),
                now_ms=now_ms,
            )
            nursery.start_soon(queue._dispatch, name="queue-dispatch")
            try:
                yield queue
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise_single(group)
