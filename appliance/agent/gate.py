"""Who may run a turn now: one turn at a time per session (FIFO), a global cap on turns in flight.

Two implementations of one seam: :class:`LocalTurnGate` (no dependencies; used when the runtime is
created on first use) and :class:`QueueTurnGate` (the run queue, :mod:`appliance.queue`, which needs its
own nursery and journal opened by ``serve``). ``trio.Lock`` is fair (FIFO), so a session's turns run in
arrival order; the ``CapacityLimiter`` is taken after the session lock so a waiting session never holds
a global slot.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

import trio

__all__ = ["LocalTurnGate", "QueueTurnGate", "TurnGate"]


class TurnGate(Protocol):
    def hold(self, session_key: str) -> contextlib.AbstractAsyncContextManager[None]: ...


class LocalTurnGate:
    def __init__(self, max_concurrent: int) -> None:
        self.limiter = trio.CapacityLimiter(max(1, max_concurrent))
        self._locks: dict[str, trio.Lock] = {}
        self._waiters: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, session_key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(session_key, trio.Lock())
        self._waiters[session_key] = self._waiters.get(session_key, 0) + 1
        try:
            async with lock, self.limiter:
                yield
        finally:
            left = self._waiters[session_key] - 1
            if left:
                self._waiters[session_key] = left
            else:  # nobody else holds or waits: forget the lock (bounded memory)
                del self._waiters[session_key]
                self._locks.pop(session_key, None)


class QueueTurnGate:
    """A :class:`TurnGate` over the run queue (:mod:`appliance.queue`): its per-session FIFO lanes, global
    gate, capacity (``QueueFull`` ends the turn with a clear, retryable error) and journal.

    Each :meth:`hold` enqueues a ``task`` item (never merged or superseded: the turn owns its message) in
    ``followup`` mode; the queue's runner (:meth:`runner`) grants the slot and keeps it until the turn
    releases it. An item the journal recovered after a restart has no turn waiting for it (that turn was
    reported failed by :func:`~appliance.agent.turns.recover_interrupted`): the runner finishes it at once.

        gate = QueueTurnGate()
        async with open_run_queue(gate.runner, journal, **queue_options(settings.queue)) as queue:
            gate.queue = queue
            ...
    """

    def __init__(self) -> None:
        self.queue: Any = None
        self._slots: dict[str, tuple[trio.Event, trio.Event]] = {}

    def owns(self, item_id: str) -> bool:
        """True for an item this gate enqueued (a waiting interactive turn)."""
        return item_id in self._slots

    async def runner(self, item: Any) -> str | None:
        slot = self._slots.get(item.item_id)
        if slot is None:
            return "orphaned"
        granted, released = slot
        granted.set()
        await released.wait()
        return None

    @contextlib.asynccontextmanager
    async def hold(self, session_key: str) -> AsyncIterator[None]:
        from appliance.queue import ItemKind, QueueMode, make_item

        if self.queue is None:
            raise RuntimeError("QueueTurnGate used before its queue was opened")
        item = make_item(session_key, kind=ItemKind.TASK, item_id=uuid.uuid4().hex)
        granted, released = trio.Event(), trio.Event()
        self._slots[item.item_id] = (granted, released)
        try:
            await self.queue.enqueue(item, mode=QueueMode.FOLLOWUP)
            await granted.wait()
            yield
        finally:
            released.set()
            self._slots.pop(item.item_id, None)
