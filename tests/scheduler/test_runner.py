from __future__ import annotations

from collections.abc import Iterator

import apsw
import pytest
import trio
import trio.testing

from appliance.errors import NotFound, ValidationFailed
from appliance.models.tasks import RunStatus, Task, TaskRun, TaskSpec, TaskStatus
from appliance.queue import MemoryJournal, QueueItem, open_run_queue
from appliance.scheduler import (
    CatchUp,
    MemoryTaskStore,
    Scheduler,
    SqliteTaskStore,
    TaskBusy,
    TaskLimitReached,
    TaskStore,
    next_run,
    open_scheduler,
    queue_dispatch,
)

BASE = 1_790_000_000_000  # 2026-09-21, a Monday
MIN = 60_000


def clock_ms() -> int:
    return BASE + round(trio.current_time() * 1000)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest) -> Iterator[TaskStore]:
    if request.param == "memory":
        yield MemoryTaskStore()
        return
    conn = apsw.Connection(":memory:")
    yield SqliteTaskStore(conn)
    conn.close()


class Dispatcher:
    def __init__(self, duration: float = 0.0, fail: bool = False) -> None:
        self.duration = duration
        self.fail = fail
        self.calls: list[tuple[int, TaskRun]] = []
        self.active: dict[str, int] = {}

    async def __call__(self, task: Task, run: TaskRun) -> str:
        self.calls.append((clock_ms(), run))
        self.active[task.id] = self.active.get(task.id, 0) + 1
        assert self.active[task.id] == 1, "a task ran twice concurrently"
        try:
            await trio.sleep(self.duration)
            if self.fail:
                raise RuntimeError("boom")
            return f"done {task.name}"
        finally:
            self.active[task.id] -= 1


def add_interval(s: Scheduler, every: int = MIN, name: str = "t") -> Task:
    return s.add(
        name=name, spec=TaskSpec.interval(every, clock_ms()), prompt="p", session_key="agent:main:main"
    )


async def test_interval_runs_on_its_grid_and_logs_runs(
    store: TaskStore, autojump_clock: trio.testing.MockClock
) -> None:
    dispatch = Dispatcher(duration=5)
    with trio.fail_after(10_000):
        async with open_scheduler(store, dispatch, now_ms=clock_ms) as sched:
            task = add_interval(sched)
            await trio.sleep(3.5 * 60)
            runs = sched.runs(task.id)
    assert [run.scheduled_ms - BASE for _, run in dispatch.calls] == [MIN, 2 * MIN, 3 * MIN]
    assert [at - BASE for at, _ in dispatch.calls] == [MIN, 2 * MIN, 3 * MIN]
    assert [r.status for r in runs] == [RunStatus.OK] * 3
    assert runs[0].result == "done t"
    assert runs[0].duration_ms == 5000


async def test_sleeps_without_wakeups_and_wakes_early_on_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    dispatch = Dispatcher()
    with trio.fail_after(10_000_000):
        async with open_scheduler(MemoryTaskStore(), dispatch, now_ms=clock_ms, max_sleep_s=10**7) as sched:
            await trio.sleep(86_400)
            assert sched.wakeups == 0  # no tasks: not a single wake-up in a day
            task = sched.add(
                name="far", spec=TaskSpec.once(clock_ms() + 86_400_000), prompt="p", session_key="k"
            )
            await trio.sleep(3600)
            assert sched.wakeups == 1  # the add woke it once; then it sleeps until the task is due
            soon = sched.add(name="soon", spec=TaskSpec.once(clock_ms() + 1000), prompt="p", session_key="k")
            await trio.sleep(2)
            assert [run.task_id for _, run in dispatch.calls] == [soon.id]
            sched.remove(task.id)
            await trio.sleep(2 * 86_400)
    assert [run.task_id for _, run in dispatch.calls] == [soon.id]


async def test_once_completes_and_errors_are_logged(
    store: TaskStore, autojump_clock: trio.testing.MockClock
) -> None:
    dispatch = Dispatcher(fail=True)
    with trio.fail_after(10_000):
        async with open_scheduler(store, dispatch, now_ms=clock_ms) as sched:
            task = sched.add(name="o", spec=TaskSpec.once(BASE + 10_000), prompt="p", session_key="k")
            await trio.sleep(20)
            done = sched.get(task.id)
            runs = sched.runs(task.id)
    assert done.status is TaskStatus.COMPLETED
    assert done.next_run_ms is None
    assert done.last_status is RunStatus.ERROR
    assert done.last_error == "RuntimeError: boom"
    assert [(r.status, r.error) for r in runs] == [(RunStatus.ERROR, "RuntimeError: boom")]


async def test_never_twice_concurrently_slots_skipped(autojump_clock: trio.testing.MockClock) -> None:
    dispatch = Dispatcher(duration=150)  # 2.5 intervals
    with trio.fail_after(10_000):
        async with open_scheduler(MemoryTaskStore(), dispatch, now_ms=clock_ms) as sched:
            task = add_interval(sched)
            await trio.sleep(90)
            assert sched.running(task.id) is not None
            with pytest.raises(TaskBusy):
                sched.run_now(task.id)
            await trio.sleep(310)
    starts = [at - BASE for at, _ in dispatch.calls]
    assert starts == [MIN, 4 * MIN]  # slots 2 and 3 fell inside the first run and were skipped


async def test_pause_resume_run_now_and_validation(
    store: TaskStore, autojump_clock: trio.testing.MockClock
) -> None:
    dispatch = Dispatcher(duration=1)
    with trio.fail_after(10_000):
        async with open_scheduler(store, dispatch, now_ms=clock_ms, max_tasks=2) as sched:
            task = add_interval(sched)
            sched.pause(task.id)
            await trio.sleep(300)
            assert dispatch.calls == []
            resumed = sched.resume(task.id)
            assert resumed.next_run_ms == next_run(task.spec, clock_ms())
            run = sched.run_now(task.id)
            with pytest.raises(TaskBusy):
                sched.run_now(task.id)
            finished = await sched.wait_run(run.run_id)
            assert finished.manual
            assert finished.status is RunStatus.OK
            assert sched.get(task.id).next_run_ms == resumed.next_run_ms  # manual runs keep the schedule
            with pytest.raises(ValidationFailed):
                sched.add(name="bad", spec=TaskSpec.cron("not a cron"), prompt="p", session_key="k")
            with pytest.raises(ValidationFailed):
                sched.add(name="past", spec=TaskSpec.once(BASE - 1), prompt="p", session_key="k")
            updated = sched.update(task.id, spec=TaskSpec.cron("0 9 * * *", "Europe/Berlin"), name="renamed")
            assert updated.name == "renamed"
            assert updated.next_run_ms == next_run(updated.spec, clock_ms())
            add_interval(sched, name="second")
            with pytest.raises(TaskLimitReached):
                add_interval(sched, name="third")
            with pytest.raises(NotFound):
                sched.remove("nope")
            sched.remove(task.id)
            assert sched.runs(task.id) == []


@pytest.mark.parametrize(("policy", "expected_runs"), [(CatchUp.ONCE, 1), (CatchUp.SKIP, 0)])
async def test_catch_up_after_downtime_runs_once_not_n_times(
    store: TaskStore, policy: CatchUp, expected_runs: int, autojump_clock: trio.testing.MockClock
) -> None:
    spec = TaskSpec.interval(MIN, BASE - 10 * MIN - 30_000)
    store.save(
        Task(
            id="t1",
            name="missed",
            spec=spec,
            prompt="p",
            session_key="k",
            created_ms=spec.anchor_ms,
            updated_ms=spec.anchor_ms,
            next_run_ms=BASE - 9 * MIN - 30_000,  # ten slots missed
        )
    )
    dispatch = Dispatcher()
    with trio.fail_after(10_000):
        async with open_scheduler(store, dispatch, now_ms=clock_ms, catch_up=policy) as sched:
            await trio.sleep(1)
            assert len(dispatch.calls) == expected_runs
            nxt = sched.get("t1").next_run_ms
    assert nxt == BASE + 30_000  # back on the original grid, nothing bunched


async def test_restart_closes_interrupted_runs_without_firing_again(
    store: TaskStore, autojump_clock: trio.testing.MockClock
) -> None:
    hang = Dispatcher(duration=10**6)
    with trio.fail_after(10**7):
        async with open_scheduler(store, hang, now_ms=clock_ms) as sched:
            task = sched.add(name="o", spec=TaskSpec.once(BASE + 1000), prompt="p", session_key="k")
            await trio.sleep(5)
            assert sched.running(task.id) is not None
        # the block exited mid-run, as a crash would leave it
        again = Dispatcher()
        async with open_scheduler(store, again, now_ms=clock_ms) as sched:
            await trio.sleep(3600)
            runs = sched.runs(task.id)
    assert again.calls == []
    assert [r.status for r in runs] == [RunStatus.INTERRUPTED]


async def test_tasks_run_through_the_run_queue(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[QueueItem] = []

    async def runner(item: QueueItem) -> str:
        seen.append(item)
        await trio.sleep(1)
        return "agent said hi"

    with trio.fail_after(10_000):
        async with (
            open_run_queue(runner, MemoryJournal(), max_concurrent=1) as queue,
            open_scheduler(MemoryTaskStore(), queue_dispatch(queue), now_ms=clock_ms) as sched,
        ):
            task = sched.add(name="q", spec=TaskSpec.once(BASE + 1000), prompt="hello", session_key="s")
            await trio.sleep(10)
            runs = sched.runs(task.id)
    assert [(i.kind, i.text, i.task_id, i.session_key) for i in seen] == [("task", "hello", task.id, "s")]
    assert [(r.status, r.result) for r in runs] == [(RunStatus.OK, "agent said hi")]


def test_sqlite_store_round_trips_tasks() -> None:
    conn = apsw.Connection(":memory:")
    store = SqliteTaskStore(conn)
    task = Task(
        id="t",
        name="n",
        spec=TaskSpec.cron("*/5 * * * *", "America/New_York"),
        prompt="p",
        session_key="k",
        created_ms=1,
        updated_ms=2,
        next_run_ms=3,
        last_status=RunStatus.OK,
    )
    store.save(task)
    run = TaskRun("r", "t", 3, 4)
    store.claim(task, run)
    assert store.load() == [task]
    assert store.runs("t") == [run]
    store.save(task)  # an update keeps the runs (no delete-and-insert cascade)
    assert store.get_run("r") == run
    store.delete("t")
    assert store.load() == []
    assert store.runs() == []
    conn.close()


async def test_once_task_due_during_a_manual_run_fires_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    dispatch = Dispatcher(duration=10)
    with trio.fail_after(10_000):
        async with open_scheduler(MemoryTaskStore(), dispatch, now_ms=clock_ms) as sched:
            task = sched.add(name="o", spec=TaskSpec.once(BASE + 5000), prompt="p", session_key="k")
            sched.run_now(task.id)
            await trio.sleep(60)
            done = sched.get(task.id)
    assert [(at - BASE, run.manual) for at, run in dispatch.calls] == [(0, True), (10_000, False)]
    assert done.status is TaskStatus.COMPLETED


async def test_errors_raised_in_the_block_come_out_unwrapped() -> None:
    with trio.fail_after(5), pytest.raises(KeyError):
        async with open_scheduler(MemoryTaskStore(), Dispatcher()):
            raise KeyError("mine")
