"""The scheduler's trio shell: sleep until the earliest next run, fire due tasks, log every run.

Rules:
- One loop task. It computes the earliest ``next_run_ms`` of the active tasks and sleeps until then on
  a :class:`trio.Event` that every change (add, update, remove, pause, resume, run end) sets. With no
  task due it does not wake at all (with tasks, at most once per ``max_sleep_s``, a guard against
  wall-clock jumps). ``wakeups`` counts loop turns for the bench.
- Firing claims the slot first: the task's next run is advanced and the run row written in one store
  write, then the run starts. A task never runs twice concurrently: a slot that comes due while the
  previous run is still going is skipped (logged), not queued.
- Catch-up after downtime is explicit: ``CatchUp.ONCE`` (default) runs a task whose slot passed once,
  then continues on its grid from now; ``CatchUp.SKIP`` runs nothing and moves to the next slot.
- Runs left ``running`` by a dead process are closed as ``interrupted`` at start; their slot was
  already advanced, so they do not fire again. Work that must survive a crash goes through the run
  queue (:func:`queue_dispatch`), whose journal re-queues it.
- The wall clock (``now_ms``) is injected; sleeping uses trio's clock, so tests run under
  ``autojump_clock`` with ``now_ms`` derived from ``trio.current_time()``.
"""

from __future__ import annotations

import contextlib
import enum
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import trio

from appliance.errors import InvalidRequest, NotFound, Unavailable, ValidationFailed
from appliance.log import get_logger
from appliance.models.tasks import RunStatus, ScheduleKind, Task, TaskRun, TaskSpec, TaskStatus
from appliance.queue import ItemKind, ItemState, RunQueue, make_item, raise_single
from appliance.scheduler.task_store import TaskStore
from appliance.scheduler.timing import InvalidSchedule, next_run

__all__ = [
    "CatchUp",
    "Dispatch",
    "Scheduler",
    "TaskBusy",
    "TaskLimitReached",
    "open_scheduler",
    "queue_dispatch",
]

log = get_logger("appliance.scheduler")

#: runs a task; returns a short result text or raises (the run is logged as ``error``)
Dispatch = Callable[[Task, TaskRun], Awaitable[str | None]]

_RESULT_CHARS = 2000


class TaskBusy(Unavailable):
    """``run now`` on a task whose previous run has not ended."""


class TaskLimitReached(InvalidRequest):
    """The scheduler already holds ``max_tasks`` tasks."""


class CatchUp(enum.StrEnum):
    ONCE = "once"
    SKIP = "skip"


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _first_run(spec: TaskSpec, now_ms: int) -> int | None:
    try:
        return next_run(spec, now_ms)
    except InvalidSchedule as exc:
        raise ValidationFailed(str(exc), details={"schedule": str(exc)}) from exc


class Scheduler:
    """Tasks in memory (bounded by ``max_tasks``), mirrored to a :class:`TaskStore`.

    Create it with :func:`open_scheduler`. Mutating methods are synchronous: they write the store and
    wake the loop.
    """

    def __init__(
        self,
        *,
        store: TaskStore,
        dispatch: Dispatch,
        nursery: trio.Nursery,
        now_ms: Callable[[], int],
        max_tasks: int,
        catch_up: CatchUp,
        max_sleep_s: float,
    ) -> None:
        self._store = store
        self._dispatch = dispatch
        self._nursery = nursery
        self._now_ms = now_ms
        self.max_tasks = max_tasks
        self.catch_up = catch_up
        self.max_sleep_s = max_sleep_s
        self._tasks: dict[str, Task] = {}
        self._running: dict[str, TaskRun] = {}
        self._run_ended: dict[str, trio.Event] = {}
        self._wake = trio.Event()
        self.wakeups = 0

    # -- queries -----------------------------------------------------------------------------------

    def tasks(self) -> list[Task]:
        return sorted(self._tasks.values(), key=lambda t: (t.created_ms, t.id))

    def get(self, task_id: str) -> Task:
        """Raises NotFound."""
        task = self._tasks.get(task_id)
        if task is None:
            raise NotFound(f"unknown task: {task_id}")
        return task

    def running(self, task_id: str) -> TaskRun | None:
        return self._running.get(task_id)

    def runs(self, task_id: str | None = None, limit: int = 50) -> list[TaskRun]:
        return self._store.runs(task_id, limit)

    def get_run(self, run_id: str) -> TaskRun | None:
        return self._store.get_run(run_id)

    def next_wake_ms(self) -> int | None:
        """The earliest next run of an active task, or ``None`` when nothing is scheduled."""
        due = [t.next_run_ms for t in self._tasks.values() if t.status is TaskStatus.ACTIVE]
        return min((d for d in due if d is not None), default=None)

    async def wait_run(self, run_id: str) -> TaskRun:
        """Wait until the run has ended; return its log row. Raises KeyError for an unknown run."""
        while True:
            run = self._store.get_run(run_id)
            if run is None:
                raise KeyError(run_id)
            if run.status is not RunStatus.RUNNING:
                return run
            await self._run_ended.setdefault(run_id, trio.Event()).wait()

    # -- changes -----------------------------------------------------------------------------------

    def add(
        self,
        *,
        name: str,
        spec: TaskSpec,
        prompt: str,
        session_key: str,
        task_id: str | None = None,
        status: TaskStatus = TaskStatus.ACTIVE,
        extra_json: str = "{}",
    ) -> Task:
        """Create a task. Raises ValidationFailed (bad schedule, or a ``once`` time in the past),
        TaskLimitReached, InvalidRequest (duplicate id)."""
        if len(self._tasks) >= self.max_tasks:
            raise TaskLimitReached(f"task limit reached ({self.max_tasks})")
        task_id = task_id or _new_id("task")
        if task_id in self._tasks:
            raise InvalidRequest(f"task exists: {task_id}")
        now = self._now_ms()
        first = _first_run(spec, now)
        if first is None:
            raise ValidationFailed("schedule has no future run", details={"schedule": "in the past"})
        task = Task(
            id=task_id,
            name=name,
            spec=spec,
            prompt=prompt,
            session_key=session_key,
            created_ms=now,
            updated_ms=now,
            status=status,
            next_run_ms=first,
            extra_json=extra_json,
        )
        self._store.save(task)
        self._tasks[task.id] = task
        log.info("task_added", task_id=task.id, kind=str(spec.kind), next_run_ms=first)
        self._poke()
        return task

    def update(
        self,
        task_id: str,
        *,
        name: str | None = None,
        spec: TaskSpec | None = None,
        prompt: str | None = None,
        session_key: str | None = None,
        extra_json: str | None = None,
    ) -> Task:
        """Change a task; a new schedule recomputes the next run from now. Raises NotFound,
        ValidationFailed."""
        task = self.get(task_id)
        now = self._now_ms()
        updated = attrs.evolve(
            task,
            name=task.name if name is None else name,
            prompt=task.prompt if prompt is None else prompt,
            session_key=task.session_key if session_key is None else session_key,
            extra_json=task.extra_json if extra_json is None else extra_json,
            updated_ms=now,
        )
        if spec is not None and spec != task.spec:
            nxt = _first_run(spec, now)
            status = task.status
            if status is TaskStatus.COMPLETED and nxt is not None:
                status = TaskStatus.ACTIVE
            updated = attrs.evolve(updated, spec=spec, next_run_ms=nxt, status=status)
        self._store.save(updated)
        self._tasks[task_id] = updated
        log.info("task_updated", task_id=task_id, next_run_ms=updated.next_run_ms)
        self._poke()
        return updated

    def remove(self, task_id: str) -> None:
        """Delete a task and its run log. A run in flight finishes but is not logged. Raises NotFound."""
        self.get(task_id)
        self._store.delete(task_id)
        del self._tasks[task_id]
        log.info("task_removed", task_id=task_id)
        self._poke()

    def pause(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task.status is TaskStatus.ACTIVE:
            task = self._save(attrs.evolve(task, status=TaskStatus.PAUSED, updated_ms=self._now_ms()))
        return task

    def resume(self, task_id: str) -> Task:
        """Reactivate a paused task. The next run is recomputed from now (NanoClaw kept a stale one); a
        ``once`` task whose time passed while paused runs once now (the catch-up policy)."""
        task = self.get(task_id)
        if task.status is not TaskStatus.PAUSED:
            return task
        now = self._now_ms()
        nxt = _first_run(task.spec, now)
        if nxt is None and task.spec.kind is ScheduleKind.ONCE and task.last_run_ms is None:
            nxt = now if self.catch_up is CatchUp.ONCE else None
        status = TaskStatus.ACTIVE if nxt is not None else TaskStatus.COMPLETED
        return self._save(attrs.evolve(task, status=status, next_run_ms=nxt, updated_ms=now))

    def run_now(self, task_id: str) -> TaskRun:
        """Start a run at once, outside the schedule (the next scheduled run is unchanged).
        Raises NotFound, TaskBusy."""
        task = self.get(task_id)
        if task_id in self._running:
            raise TaskBusy(f"task is running: {task_id}", retry_after_ms=1000)
        return self._fire(task, self._now_ms(), manual=True)

    # -- internals ---------------------------------------------------------------------------------

    def _save(self, task: Task) -> Task:
        self._store.save(task)
        self._tasks[task.id] = task
        self._poke()
        return task

    def _poke(self) -> None:
        self._wake.set()

    def _recover(self) -> None:
        now = self._now_ms()
        for run in self._store.close_interrupted(now):
            log.warning("run_interrupted", task_id=run.task_id, run_id=run.run_id)
        for task in self._store.load():
            self._tasks[task.id] = task
            due = (
                task.status is TaskStatus.ACTIVE and task.next_run_ms is not None and task.next_run_ms <= now
            )
            if due and self.catch_up is CatchUp.SKIP:
                nxt = next_run(task.spec, now)
                status = TaskStatus.COMPLETED if nxt is None else task.status
                self._tasks[task.id] = attrs.evolve(task, next_run_ms=nxt, status=status, updated_ms=now)
                self._store.save(self._tasks[task.id])
                log.info("run_skipped", task_id=task.id, reason="missed while down")

    def _fire(self, task: Task, now: int, *, manual: bool = False) -> TaskRun:
        scheduled = now if manual or task.next_run_ms is None else task.next_run_ms
        run = TaskRun(
            run_id=_new_id("run"), task_id=task.id, scheduled_ms=scheduled, started_ms=now, manual=manual
        )
        if manual:
            claimed = attrs.evolve(task, last_run_ms=now)
        else:
            claimed = attrs.evolve(task, next_run_ms=next_run(task.spec, now), last_run_ms=now)
        self._store.claim(claimed, run)
        self._tasks[task.id] = claimed
        self._running[task.id] = run
        log.info("run_started", task_id=task.id, run_id=run.run_id, scheduled_ms=scheduled, manual=manual)
        self._nursery.start_soon(self._execute, claimed, run, name=f"task:{task.id}")
        return run

    def _skip(self, task: Task, now: int) -> None:
        nxt = next_run(task.spec, now)
        log.warning("run_skipped", task_id=task.id, reason="previous run still going", next_run_ms=nxt)
        self._save(attrs.evolve(task, next_run_ms=nxt, updated_ms=now))

    async def _execute(self, task: Task, run: TaskRun) -> None:
        started = trio.current_time()
        status, error, result = RunStatus.OK, None, None
        try:
            result = await self._dispatch(task, run)
        except Exception as exc:  # a task's failure is logged in its run row, not raised
            status = RunStatus.ERROR
            error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        ended = self._now_ms()
        finished = attrs.evolve(
            run,
            status=status,
            ended_ms=ended,
            error=error,
            result=None if result is None else result[:_RESULT_CHARS],
        )
        current = self._tasks.get(task.id)
        updated = None
        if current is not None:
            done = current.spec.kind is ScheduleKind.ONCE and current.next_run_ms is None and not run.manual
            updated = attrs.evolve(
                current,
                last_status=status,
                last_error=error,
                status=TaskStatus.COMPLETED if done else current.status,
                updated_ms=ended,
            )
            self._tasks[task.id] = updated
        self._store.finish(updated, finished)
        del self._running[task.id]
        event = self._run_ended.pop(run.run_id, None)
        if event is not None:
            event.set()
        log.info(
            "run_finished",
            task_id=task.id,
            run_id=run.run_id,
            status=str(status),
            duration_ms=int((trio.current_time() - started) * 1000),
        )
        self._poke()

    async def _loop(self) -> None:
        while True:
            now = self._now_ms()
            due = sorted(
                (
                    t
                    for t in self._tasks.values()
                    if t.status is TaskStatus.ACTIVE and t.next_run_ms is not None and t.next_run_ms <= now
                ),
                key=lambda t: (t.next_run_ms, t.id),
            )
            for task in due:
                if task.id not in self._running:
                    self._fire(task, now)
                elif task.spec.kind is not ScheduleKind.ONCE:
                    self._skip(task, now)
                # a due ``once`` task whose manual run is going fires when that run ends (it pokes us)
            self._wake = trio.Event()
            wake_at = min(
                (
                    t.next_run_ms
                    for t in self._tasks.values()
                    if t.status is TaskStatus.ACTIVE
                    and t.next_run_ms is not None
                    and not (t.id in self._running and t.spec.kind is ScheduleKind.ONCE)
                ),
                default=None,
            )
            if wake_at is None:
                await self._wake.wait()
            else:
                delay = min(self.max_sleep_s, max(0.0, (wake_at - self._now_ms()) / 1000))
                with trio.move_on_after(delay):
                    await self._wake.wait()
            self.wakeups += 1


def queue_dispatch(queue: RunQueue) -> Dispatch:
    """Run tasks through the run queue: the task's prompt becomes a ``task`` item in its session's
    lane (durable, ordered with the session's messages); the run ends when the item is done."""

    async def dispatch(task: Task, run: TaskRun) -> str | None:
        item = make_item(
            task.session_key,
            task.prompt,
            kind=ItemKind.TASK,
            task_id=task.id,
            idempotency_key=f"{task.id}:{run.run_id}",
        )
        admission = await queue.enqueue(item)
        record = await queue.wait_done(admission.item.item_id)
        if record.state is ItemState.FAILED:
            raise RuntimeError(record.error or "run failed")
        return record.result

    return dispatch


@contextlib.asynccontextmanager
async def open_scheduler(
    store: TaskStore,
    dispatch: Dispatch,
    *,
    max_tasks: int = 256,
    catch_up: CatchUp = CatchUp.ONCE,
    max_sleep_s: float = 3600.0,
    now_ms: Callable[[], int] = _wall_ms,
) -> AsyncIterator[Scheduler]:
    """Load the tasks, close runs a dead process left open, then schedule until the block exits."""
    try:
        async with trio.open_nursery() as nursery:
            scheduler = Scheduler(
                store=store,
                dispatch=dispatch,
                nursery=nursery,
                now_ms=now_ms,
                max_tasks=max_tasks,
                catch_up=catch_up,
                max_sleep_s=max_sleep_s,
            )
            scheduler._recover()
            nursery.start_soon(scheduler._loop, name="scheduler")
            try:
                yield scheduler
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise_single(group)
