"""Queue policy, sans-IO: who runs next, what a follow-up does, when to say "busy", how to retry.

The trio shell (:mod:`appliance.queue.mailbox`) feeds this core and acts on what it answers; nothing
here sleeps, reads a clock or draws a random number on its own: ``now_ms`` and ``random`` come in.

Rules:
- Each session is a FIFO lane with at most one run at a time. Items leave a lane in the order they
  entered it, and a failed item keeps the head of its lane until it succeeds or is parked, so order
  holds across retries.
- ``max_concurrent`` runs at most, across all sessions. Sessions with work wait in a ring and take
  turns (round-robin): a session that just ran goes to the back, so one noisy group cannot starve
  the others.
- A *follow-up* is a message for a session that is running or already has work waiting. By mode:
  ``followup`` keeps every follow-up in order; ``steer`` keeps only the latest pending prompt (older
  pending prompts are superseded); ``collect`` merges a prompt-only follow-up into the pending prompt
  at the tail of the lane. Task items are never merged or superseded.
- Each lane holds at most ``capacity`` waiting items (``total_capacity`` across lanes). A full lane
  raises :class:`~appliance.errors.QueueFull` with ``retry_after_ms``, an estimate of when a slot
  frees (the running item's expected remaining time): nothing is dropped silently.
- Admission is two-step so the shell can journal between them: :meth:`QueuePolicy.plan` decides
  without changing state (and raises QueueFull), :meth:`QueuePolicy.apply` commits the plan.
- A failed run retries after ``uniform(0, min(cap, base * 2**(attempt-1)))`` ms (full jitter) until
  ``max_attempts`` runs have failed; then the item is parked as failed.
"""

from __future__ import annotations

import enum
import math
import re
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

import attrs

from appliance.errors import QueueFull

__all__ = [
    "Activation",
    "Admission",
    "AdmissionKind",
    "DedupeCache",
    "ItemKind",
    "Parked",
    "QueueItem",
    "QueueMode",
    "QueuePolicy",
    "QueueSnapshot",
    "Retry",
    "admits_group_message",
    "backoff_ms",
    "mentions_assistant",
]

V = TypeVar("V")


class QueueMode(enum.StrEnum):
    FOLLOWUP = "followup"
    STEER = "steer"
    COLLECT = "collect"


class Activation(enum.StrEnum):
    MENTION = "mention"
    ALWAYS = "always"


class ItemKind(enum.StrEnum):
    PROMPT = "prompt"
    TASK = "task"


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attrs.frozen
class QueueItem:
    """One unit of work for a session. ``seq`` orders items globally; the shell assigns it."""

    item_id: str
    session_key: str
    kind: ItemKind = attrs.field(default=ItemKind.PROMPT, converter=ItemKind)
    text: str = ""
    attachments: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    idempotency_key: str | None = None
    task_id: str | None = None
    attempt: int = 0
    accepted_ms: int = 0

    @property
    def prompt_only(self) -> bool:
        return self.kind is ItemKind.PROMPT and not self.attachments


class AdmissionKind(enum.StrEnum):
    QUEUED = "queued"
    MERGED = "merged"  # collect: the text joined the pending prompt ``item``
    REPLACED = "replaced"  # steer: ``item`` replaces the pending prompts in ``supersedes``
    DUPLICATE = "duplicate"  # the idempotency key was seen; ``item`` is the first request's item


@attrs.frozen
class Admission:
    """What happened to an offered item. ``item`` is what the lane now holds for it."""

    kind: AdmissionKind
    item: QueueItem
    #: ids of pending items this admission removes from the lane (their work lives on in ``item``)
    supersedes: tuple[str, ...] = ()


@attrs.frozen
class Retry:
    item: QueueItem
    delay_ms: int


@attrs.frozen
class Parked:
    item: QueueItem
    attempts: int


@attrs.frozen
class QueueSnapshot:
    """Queue state for ``status``: counts only, cheap to build."""

    running: int
    waiting: int
    parked: int
    sessions: int
    max_concurrent: int
    backing_off: int

    def to_wire(self) -> dict[str, int]:
        """The ``queue`` object for ``status``."""
        return {
            "running": self.running,
            "waiting": self.waiting,
            "parked": self.parked,
            "sessions": self.sessions,
            "maxConcurrent": self.max_concurrent,
            "backingOff": self.backing_off,
        }


_MENTION_EDGE = r"(?<![\w@.])@{name}(?![\w])"


def mentions_assistant(text: str, names: Iterable[str]) -> bool:
    """Does ``text`` address the assistant? ``@Name`` anywhere as a whole word, case-insensitive.

    ``"@Andy hi"``, ``"ok @andy?"`` and ``"@Andy's"`` do; ``"@Andyextra"``, ``"mail@andy.org"`` and a bare
    ``"Andy"`` do not. Channels that know better (a native mention, a reply to the bot) pass
    ``explicit=True`` to :func:`admits_group_message` instead.
    """
    for name in names:
        stripped = name.strip().lstrip("@")
        if stripped and re.search(_MENTION_EDGE.format(name=re.escape(stripped)), text, re.IGNORECASE):
            return True
    return False


def admits_group_message(
    activation: Activation, text: str, names: Iterable[str], *, explicit: bool = False
) -> bool:
    """Group activation: ``always`` admits everything, ``mention`` only messages that address us.

    Direct chats are not gated; callers apply this to group sessions only. A message that is not
    admitted is not an error: it is simply not queued.
    """
    if activation is Activation.ALWAYS or explicit:
        return True
    return mentions_assistant(text, names)


def backoff_ms(attempt: int, *, base_ms: int, cap_ms: int, random: Callable[[], float]) -> int:
    """Full-jitter delay before retry number ``attempt`` (1-based): ``uniform(0, min(cap, base*2**(n-1)))``."""
    ceiling = min(cap_ms, base_ms * 2 ** min(max(attempt, 1) - 1, 62))
    return int(random() * ceiling)


@attrs.define
class _Lane:
    pending: deque[QueueItem] = attrs.Factory(deque)
    running: QueueItem | None = None
    backing_off: QueueItem | None = None
    mode: QueueMode | None = None

    @property
    def busy(self) -> bool:
        return self.running is not None or self.backing_off is not None or bool(self.pending)

    @property
    def idle(self) -> bool:
        return not self.busy


class QueuePolicy:
    """The per-session FIFO lanes, the ready ring and the global gate count."""

    def __init__(
        self,
        *,
        max_concurrent: int,
        capacity: int,
        total_capacity: int | None = None,
        default_mode: QueueMode = QueueMode.FOLLOWUP,
        max_attempts: int = 4,
        retry_base_ms: int = 500,
        retry_cap_ms: int = 60_000,
        random: Callable[[], float],
        collect_separator: str = "\n\n",
    ) -> None:
        if max_concurrent < 1 or capacity < 1 or max_attempts < 1:
            raise ValueError("max_concurrent, capacity and max_attempts must be >= 1")
        self.max_concurrent = max_concurrent
        self.capacity = capacity
        self.total_capacity = total_capacity if total_capacity is not None else capacity * 256
        self.default_mode = QueueMode(default_mode)
        self.max_attempts = max_attempts
        self.retry_base_ms = retry_base_ms
        self.retry_cap_ms = retry_cap_ms
        self._random = random
        self._separator = collect_separator
        self._lanes: dict[str, _Lane] = {}
        self._ready: deque[str] = deque()  # sessions with pending work, not running, not backing off
        self._in_ready: set[str] = set()
        self._active = 0
        self._waiting = 0
        self._parked: list[Parked] = []
        self._avg_run_ms = 1000.0  # EWMA of run durations, seeds retry_after_ms

    # -- configuration ---------------------------------------------------------------------------

    def set_mode(self, session_key: str, mode: QueueMode | None) -> None:
        """Per-session override (``/queue`` in OpenClaw); ``None`` returns to the default."""
        lane = self._lanes.get(session_key)
        if lane is None:
            if mode is None:
                return
            lane = self._lanes[session_key] = _Lane()
        lane.mode = mode
        self._forget_if_idle(session_key)

    def mode_of(self, session_key: str) -> QueueMode:
        lane = self._lanes.get(session_key)
        return lane.mode if lane is not None and lane.mode is not None else self.default_mode

    # -- admission ---------------------------------------------------------------------------------

    def plan(self, item: QueueItem, *, mode: QueueMode | None = None) -> Admission:
        """Decide what offering ``item`` does, without changing state. Raises QueueFull."""
        lane = self._lanes.get(item.session_key)
        mode = QueueMode(mode) if mode is not None else self.mode_of(item.session_key)
        follow_up = lane is not None and lane.busy
        if follow_up and lane is not None and item.prompt_only:
            prompts = [p for p in lane.pending if p.prompt_only]
            if mode is QueueMode.STEER and prompts:
                return Admission(AdmissionKind.REPLACED, item, tuple(p.item_id for p in prompts))
            tail = lane.pending[-1] if lane.pending else None
            if mode is QueueMode.COLLECT and tail is not None and tail.prompt_only:
                merged = attrs.evolve(
                    item,
                    text=f"{tail.text}{self._separator}{item.text}" if tail.text else item.text,
                    accepted_ms=tail.accepted_ms,
                )
                return Admission(AdmissionKind.MERGED, merged, (tail.item_id,))
        waiting_here = len(lane.pending) if lane is not None else 0
        if waiting_here >= self.capacity:
            raise QueueFull(
                "session queue is full",
                retry_after_ms=self.retry_after_ms(),
                details={"sessionKey": item.session_key, "capacity": self.capacity},
            )
        if self._waiting >= self.total_capacity:
            raise QueueFull(
                "queue is full",
                retry_after_ms=self.retry_after_ms(),
                details={"capacity": self.total_capacity},
            )
        return Admission(AdmissionKind.QUEUED, item)

    def apply(self, admission: Admission) -> None:
        """Commit a plan made by :meth:`plan` (nothing may have changed the lane in between)."""
        item = admission.item
        lane = self._lanes.setdefault(item.session_key, _Lane())
        if admission.supersedes:
            gone = set(admission.supersedes)
            before = len(lane.pending)
            lane.pending = deque(p for p in lane.pending if p.item_id not in gone)
            self._waiting -= before - len(lane.pending)
        lane.pending.append(item)
        self._waiting += 1
        self._mark_ready(item.session_key)

    def offer(self, item: QueueItem, *, mode: QueueMode | None = None) -> Admission:
        """:meth:`plan` then :meth:`apply`, for callers with nothing to journal in between."""
        admission = self.plan(item, mode=mode)
        self.apply(admission)
        return admission

    def restore(self, items: Sequence[QueueItem]) -> None:
        """Reload recovered items (already in journal order), ignoring capacity: they were acknowledged."""
        for item in items:
            lane = self._lanes.setdefault(item.session_key, _Lane())
            lane.pending.append(item)
            self._waiting += 1
            self._mark_ready(item.session_key)

    def retry_after_ms(self) -> int:
        """How long a refused sender should wait: about one run, bounded to [100 ms, 60 s]."""
        return max(100, min(60_000, math.ceil(self._avg_run_ms)))

    # -- running -----------------------------------------------------------------------------------

    def take(self) -> QueueItem | None:
        """The next item to start, or ``None`` if the gate is full or nothing is ready.

        The item's session is marked running and the gate count taken; report the end with
        :meth:`complete` or :meth:`fail`.
        """
        if self._active >= self.max_concurrent:
            return None
        while self._ready:
            key = self._ready.popleft()
            self._in_ready.discard(key)
            lane = self._lanes.get(key)
            if lane is None or lane.running is not None or lane.backing_off is not None or not lane.pending:
                continue
            item = lane.pending.popleft()
            self._waiting -= 1
            lane.running = item
            self._active += 1
            return item
        return None

    def complete(self, item: QueueItem, *, run_ms: float | None = None) -> None:
        """The run of ``item`` ended (successfully, or with a result that must not be retried)."""
        lane = self._finish(item)
        if run_ms is not None:
            self._avg_run_ms = 0.8 * self._avg_run_ms + 0.2 * max(0.0, run_ms)
        if lane.pending:
            self._mark_ready(item.session_key)
        self._forget_if_idle(item.session_key)

    def fail(self, item: QueueItem, *, run_ms: float | None = None, retryable: bool = True) -> Retry | Parked:
        """The run failed. Either retry later (the lane waits, keeping its order) or park the item.

        ``retryable=False`` (an error no retry can fix) parks at once.
        """
        lane = self._finish(item)
        if run_ms is not None:
            self._avg_run_ms = 0.8 * self._avg_run_ms + 0.2 * max(0.0, run_ms)
        attempts = item.attempt + 1
        if attempts >= self.max_attempts or not retryable:
            parked = Parked(attrs.evolve(item, attempt=attempts), attempts)
            self._parked.append(parked)
            del self._parked[: -self.capacity * 4]  # the journal keeps them all; memory keeps the recent
            if lane.pending:
                self._mark_ready(item.session_key)
            self._forget_if_idle(item.session_key)
            return parked
        again = attrs.evolve(item, attempt=attempts)
        lane.backing_off = again
        delay = backoff_ms(
            attempts, base_ms=self.retry_base_ms, cap_ms=self.retry_cap_ms, random=self._random
        )
        return Retry(again, delay)

    def retry_due(self, session_key: str) -> None:
        """The backoff of the session's failed item is over: put it back at the head of its lane."""
        lane = self._lanes.get(session_key)
        if lane is None or lane.backing_off is None:
            return
        lane.pending.appendleft(lane.backing_off)
        lane.backing_off = None
        self._waiting += 1
        self._mark_ready(session_key)

    def drop_backoff(self, session_key: str) -> QueueItem | None:
        """Forget a backing-off item (shutdown); the journal still has it queued."""
        lane = self._lanes.get(session_key)
        if lane is None or lane.backing_off is None:
            return None
        item, lane.backing_off = lane.backing_off, None
        self._forget_if_idle(session_key)
        return item

    # -- introspection -----------------------------------------------------------------------------

    @property
    def active(self) -> int:
        return self._active

    def is_idle(self) -> bool:
        return (
            self._active == 0
            and self._waiting == 0
            and not any(lane.backing_off is not None for lane in self._lanes.values())
        )

    def pending_of(self, session_key: str) -> list[QueueItem]:
        lane = self._lanes.get(session_key)
        return list(lane.pending) if lane is not None else []

    def running_of(self, session_key: str) -> QueueItem | None:
        lane = self._lanes.get(session_key)
        return lane.running if lane is not None else None

    @property
    def parked(self) -> list[Parked]:
        return list(self._parked)

    def snapshot(self) -> QueueSnapshot:
        return QueueSnapshot(
            running=self._active,
            waiting=self._waiting,
            parked=len(self._parked),
            sessions=len(self._lanes),
            max_concurrent=self.max_concurrent,
            backing_off=sum(1 for lane in self._lanes.values() if lane.backing_off is not None),
        )

    # -- internals ---------------------------------------------------------------------------------

    def _finish(self, item: QueueItem) -> _Lane:
        lane = self._lanes.get(item.session_key)
        if lane is None or lane.running is None or lane.running.item_id != item.item_id:
            raise ValueError(f"item {item.item_id} is not running")
        lane.running = None
        self._active -= 1
        return lane

    def _mark_ready(self, key: str) -> None:
        lane = self._lanes[key]
        if key not in self._in_ready and lane.running is None and lane.backing_off is None and lane.pending:
            self._ready.append(key)
            self._in_ready.add(key)

    def _forget_if_idle(self, key: str) -> None:
        lane = self._lanes.get(key)
        if lane is not None and lane.idle and lane.mode is None:
            del self._lanes[key]


@attrs.frozen
class _Entry(Generic[V]):
    value: V
    expires_ms: int


class DedupeCache(Generic[V]):
    """Idempotency keys -> the first result, for ``ttl_ms``, never more than ``max_entries`` entries.

    A repeated key within the TTL returns the stored value. When full, the oldest entry is evicted
    (entries are kept in insertion order; a repeat does not refresh the TTL: the first request's
    acceptance is what the TTL measures). Expired entries are dropped as they are met at the front.
    """

    def __init__(self, *, ttl_ms: int, max_entries: int) -> None:
        if ttl_ms <= 0 or max_entries <= 0:
            raise ValueError("ttl_ms and max_entries must be positive")
        self.ttl_ms = ttl_ms
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry[V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now_ms: int) -> V | None:
        self._expire(now_ms)
        entry = self._entries.get(key)
        if entry is None or entry.expires_ms <= now_ms:
            return None
        return entry.value

    def put(self, key: str, value: V, now_ms: int) -> V:
        """Store ``value`` unless ``key`` is live already; return the value the key now maps to."""
        self._expire(now_ms)
        existing = self._entries.get(key)
        if existing is not None and existing.expires_ms > now_ms:
            return existing.value
        self._entries.pop(key, None)
        self._entries[key] = _Entry(value, now_ms + self.ttl_ms)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def load(self, entries: Mapping[str, tuple[V, int]], now_ms: int) -> None:
        """Warm the cache from the store: ``key -> (value, accepted_ms)``, oldest first."""
        for key, (value, accepted_ms) in sorted(entries.items(), key=lambda kv: kv[1][1]):
            if accepted_ms + self.ttl_ms > now_ms:
                self._entries.pop(key, None)
                self._entries[key] = _Entry(value, accepted_ms + self.ttl_ms)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _expire(self, now_ms: int) -> None:
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.expires_ms > now_ms:
                break
            del self._entries[key]
