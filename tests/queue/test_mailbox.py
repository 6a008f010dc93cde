from __future__ import annotations

from collections import defaultdict

import pytest
import trio
import trio.testing

from appliance.errors import InvalidRequest, QueueFull
from appliance.queue import (
    AdmissionKind,
    ItemKind,
    ItemState,
    MemoryJournal,
    QueueItem,
    QueueMode,
    make_item,
    open_run_queue,
)


class Recorder:
    """A runner that records starts, concurrency and ends; per-item behaviour is scripted."""

    def __init__(self, *, duration: float = 1.0, fail_times: dict[str, int] | None = None) -> None:
        self.duration = duration
        self.fail_times = dict(fail_times or {})
        self.starts: list[tuple[float, QueueItem]] = []
        self.done: list[str] = []
        self.active = 0
        self.max_active = 0
        self.active_sessions: set[str] = set()

    async def __call__(self, item: QueueItem) -> str | None:
        assert item.session_key not in self.active_sessions, "two runs of one session overlap"
        self.active_sessions.add(item.session_key)
        self.starts.append((trio.current_time(), item))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            # vary the duration by session so runs interleave unevenly
            await trio.sleep(self.duration * (1 + hash(item.session_key) % 3))
            if self.fail_times.get(item.text, 0) > 0:
                self.fail_times[item.text] -= 1
                raise RuntimeError("boom")
            if item.text == "fatal":
                raise InvalidRequest("bad input")
            self.done.append(item.text)
            return f"result:{item.text}"
        finally:
            self.active -= 1
            self.active_sessions.discard(item.session_key)


async def test_fifty_sessions_gate_of_two_keeps_order_bound_and_fairness(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Acceptance: 50 sessions at once, gate 2: per-session order, <= 2 concurrent, no starvation."""
    runner = Recorder()
    journal = MemoryJournal()
    per_session = 4
    with trio.fail_after(10_000):
        async with open_run_queue(runner, journal, max_concurrent=2, capacity=per_session) as queue:
            async with trio.open_nursery() as nursery:
                for s in range(50):
                    for n in range(per_session):
                        nursery.start_soon(queue.enqueue, make_item(f"s{s}", f"s{s}-{n}"))
            await queue.wait_idle()
    assert runner.max_active == 2
    assert len(runner.done) == 50 * per_session
    order: dict[str, list[int]] = defaultdict(list)
    for position, (_, item) in enumerate(runner.starts):
        order[item.session_key].append(position)
        assert item.text.startswith(item.session_key)
    accepted = [r.item for r in journal.records()]  # acknowledgement order (journal seq)
    assert len({i.session_key for i in accepted[:50]}) > 1  # the enqueues really interleaved
    for s in range(50):
        started = [i.item_id for _, i in runner.starts if i.session_key == f"s{s}"]
        assert started == [i.item_id for i in accepted if i.session_key == f"s{s}"]  # per-session FIFO
    # no starvation: round-robin serves every session once per round of ~50 starts (the gate of 2 lets a
    # session re-enter the ring a place or two early), so the k-th item of each starts by round k
    for positions in order.values():
        for k, position in enumerate(positions):
            assert position < (k + 1) * 52
    assert all(r.state is ItemState.DONE for r in journal.records())


async def test_noisy_group_does_not_starve_a_quiet_one(autojump_clock: trio.testing.MockClock) -> None:
    runner = Recorder()
    with trio.fail_after(10_000):
        async with open_run_queue(runner, MemoryJournal(), max_concurrent=1, capacity=100) as queue:
            for n in range(100):
                await queue.enqueue(make_item("noisy", f"n{n}"))
            await queue.enqueue(make_item("quiet", "q"))
            await queue.wait_idle()
    sessions = [item.session_key for _, item in runner.starts]
    assert sessions.index("quiet") <= 2


async def test_enqueue_acknowledges_after_the_journal_has_the_item() -> None:
    journal = MemoryJournal()
    gate = trio.Event()

    async def runner(item: QueueItem) -> str:
        await gate.wait()
        return "ok"

    with trio.fail_after(5):
        async with open_run_queue(runner, journal, max_concurrent=1) as queue:
            admission = await queue.enqueue(make_item("s", "hello"))
            record = journal.get(admission.item.item_id)
            assert record is not None
            assert record.state in (ItemState.QUEUED, ItemState.RUNNING)
            gate.set()
            await queue.wait_idle()
            record = journal.get(admission.item.item_id)
            assert record is not None
            assert record.state is ItemState.DONE
            assert record.result == "ok"


async def test_retry_with_backoff_on_the_trio_clock_then_park(autojump_clock: trio.testing.MockClock) -> None:
    runner = Recorder(duration=0.0, fail_times={"flaky": 2, "doomed": 99})
    journal = MemoryJournal()
    with trio.fail_after(1000):
        async with open_run_queue(
            runner,
            journal,
            max_concurrent=1,
            max_attempts=3,
            retry_base_ms=1000,
            retry_cap_ms=4000,
            random=lambda: 0.5,
        ) as queue:
            await queue.enqueue(make_item("a", "flaky"))
            await queue.enqueue(make_item("a", "after-flaky"))
            await queue.enqueue(make_item("b", "doomed"))
            await queue.wait_idle()
            assert queue.snapshot().parked == 1
    starts = [(round(t, 3), item.text) for t, item in runner.starts]
    flaky = [t for t, text in starts if text == "flaky"]
    assert flaky[1] - flaky[0] == pytest.approx(0.5)  # 0.5 * min(4000, 1000 * 2**0) ms
    assert flaky[2] - flaky[1] == pytest.approx(1.0)  # 0.5 * 2000 ms
    assert [t for _, t in starts if t != "doomed"] == ["flaky", "flaky", "flaky", "after-flaky"]
    assert runner.done == ["flaky", "after-flaky"]
    failed = journal.failed()
    assert [r.item.text for r in failed] == ["doomed"]
    assert failed[0].item.attempt == 3
    assert failed[0].error == "RuntimeError: boom"


async def test_non_retryable_error_parks_at_once() -> None:
    runner = Recorder(duration=0.0)
    journal = MemoryJournal()
    with trio.fail_after(5):
        async with open_run_queue(runner, journal, max_concurrent=1) as queue:
            await queue.enqueue(make_item("a", "fatal"))
            await queue.wait_idle()
    assert [t.text for _, t in runner.starts] == ["fatal"]
    assert journal.failed()[0].error == "bad input"


async def test_full_mailbox_says_busy_and_drops_nothing() -> None:
    gate = trio.Event()

    async def runner(item: QueueItem) -> str:
        await gate.wait()
        return "ok"

    journal = MemoryJournal()
    with trio.fail_after(5):
        async with open_run_queue(runner, journal, max_concurrent=1, capacity=2) as queue:
            for n in range(3):  # one running, two waiting
                await queue.enqueue(make_item("s", f"m{n}"))
                await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(QueueFull) as info:
                await queue.enqueue(make_item("s", "too many"))
            assert info.value.to_wire()["retryAfterMs"] >= 100
            assert len(journal.records()) == 3  # the refused one was never written
            gate.set()
            await queue.wait_idle()


async def test_idempotency_key_returns_first_admission_and_runs_once() -> None:
    runner = Recorder(duration=0.0)
    journal = MemoryJournal()
    with trio.fail_after(5):
        async with open_run_queue(runner, journal, max_concurrent=1) as queue:
            first = await queue.enqueue(make_item("s", "hello", idempotency_key="k1"))
            again = await queue.enqueue(make_item("s", "hello again", idempotency_key="k1"))
            await queue.wait_idle()
            later = await queue.enqueue(make_item("s", "hello later", idempotency_key="k1"))
    assert first.kind is AdmissionKind.QUEUED
    assert again.kind is later.kind is AdmissionKind.DUPLICATE
    assert again.item.item_id == first.item.item_id == "k1"
    assert runner.done == ["hello"]


async def test_idempotency_survives_restart_through_the_journal() -> None:
    runner = Recorder(duration=0.0)
    journal = MemoryJournal()
    with trio.fail_after(5):
        async with open_run_queue(runner, journal, max_concurrent=1) as queue:
            await queue.enqueue(make_item("s", "hello", idempotency_key="k1"))
            await queue.wait_idle()
        async with open_run_queue(runner, journal, max_concurrent=1) as queue:
            again = await queue.enqueue(make_item("s", "hello", idempotency_key="k1"))
            await queue.wait_idle()
    assert again.kind is AdmissionKind.DUPLICATE
    assert runner.done == ["hello"]


async def test_steer_and_collect_through_the_shell() -> None:
    gate = trio.Event()
    seen: list[str] = []

    async def runner(item: QueueItem) -> str:
        if item.text == "first":
            await gate.wait()
        seen.append(item.text)
        return "ok"

    journal = MemoryJournal()
    with trio.fail_after(5):
        async with open_run_queue(runner, journal, max_concurrent=2) as queue:
            await queue.enqueue(make_item("s", "first"))
            await trio.testing.wait_all_tasks_blocked()
            await queue.enqueue(make_item("s", "a"), mode=QueueMode.COLLECT)
            await queue.enqueue(make_item("s", "b"), mode=QueueMode.COLLECT)
            await queue.enqueue(make_item("t", "first"))
            await trio.testing.wait_all_tasks_blocked()
            await queue.enqueue(make_item("t", "x"), mode=QueueMode.STEER)
            await queue.enqueue(make_item("t", "y"), mode=QueueMode.STEER)
            await queue.enqueue(make_item("t", "task", kind=ItemKind.TASK), mode=QueueMode.STEER)
            gate.set()
            await queue.wait_idle()
    assert sorted(seen) == sorted(["first", "a\n\nb", "first", "y", "task"])
    states = [r.state for r in journal.records()]
    assert states.count(ItemState.SUPERSEDED) == 2
    assert states.count(ItemState.DONE) == 5


async def test_recovery_requeues_running_items_in_order() -> None:
    journal = MemoryJournal()
    for n in range(3):
        journal.accept(make_item("s", f"m{n}"))
    journal.mark_running(journal.pending()[0])
    runner = Recorder(duration=0.0)
    with trio.fail_after(5):
        async with open_run_queue(runner, journal, max_concurrent=1) as queue:
            await queue.wait_idle()
    assert runner.done == ["m0", "m1", "m2"]
    assert all(r.completions == 1 for r in journal.records())


async def test_idle_queue_does_not_wake(autojump_clock: trio.testing.MockClock) -> None:
    """No polling: an idle queue's dispatcher stays parked however much time passes."""
    runner = Recorder(duration=0.0)
    with trio.fail_after(10_000):
        async with open_run_queue(runner, MemoryJournal(), max_concurrent=1) as queue:
            await queue.enqueue(make_item("s", "one"))
            await queue.wait_idle()
            before = trio.lowlevel.current_statistics().tasks_living
            await trio.sleep(3600)
            assert trio.lowlevel.current_statistics().tasks_living == before
            assert autojump_clock.current_time() >= 3600


async def test_expired_idempotency_key_runs_again(autojump_clock: trio.testing.MockClock) -> None:
    runner = Recorder(duration=0.0)
    journal = MemoryJournal()

    def now_ms() -> int:
        return round(trio.current_time() * 1000)

    with trio.fail_after(10_000):
        async with open_run_queue(
            runner, journal, max_concurrent=1, dedupe_ttl_ms=1000, now_ms=now_ms
        ) as queue:
            first = await queue.enqueue(make_item("s", "one", idempotency_key="k"))
            await queue.wait_idle()
            await trio.sleep(2)
            again = await queue.enqueue(make_item("s", "two", idempotency_key="k"))
            await queue.wait_idle()
    assert again.kind is AdmissionKind.QUEUED
    assert again.item.item_id != first.item.item_id
    assert runner.done == ["one", "two"]


async def test_queue_options_from_settings() -> None:
    from appliance.config.settings import QueueSettings
    from appliance.queue import queue_options

    options = queue_options(QueueSettings(max_concurrent_runs=3, default_mode="collect"))
    assert options["max_concurrent"] == 3
    assert options["default_mode"] is QueueMode.COLLECT
    assert options["dedupe_ttl_ms"] == 600_000
    with trio.fail_after(5):
        async with open_run_queue(Recorder(duration=0.0), MemoryJournal(), **options) as queue:
            assert queue.snapshot().to_wire()["maxConcurrent"] == 3


async def test_errors_raised_in_the_block_come_out_unwrapped() -> None:
    with trio.fail_after(5), pytest.raises(KeyError):
        async with open_run_queue(Recorder(duration=0.0), MemoryJournal(), max_concurrent=1):
            raise KeyError("mine")
